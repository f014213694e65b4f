// The training noise schedule as diffusers holds it: float32 tensors built on the CPU.
//
// Why not common.ts's float64 alphasCumprod: the DDPM-posterior samplers (UnCLIP, DDPM) divide by
// 1 − ᾱ and take √(1 − ᾱ_prev) as noise scale. Near t = 0, ᾱ is within 1e-4 of 1, so float32's
// rounding of ᾱ (±3e-8) moves 1 − ᾱ by up to ~1e-3 relative; following float32 keeps the last
// steps on diffusers' numbers.
//
// How torch builds it (schedulers/scheduling_{unclip,ddpm}.py __init__):
//   betas  = torch.tensor(float64 list, dtype=float32) for squaredcos_cap_v2 (betas_for_alpha_bar):
//            reproduced exactly here by rounding the float64 betas;
//            torch.linspace(…, dtype=float32) for linear (squared for scaled_linear): reproduced to
//            within a float32 ulp or two (torch's vectorised linspace rounding depends on the CPU's
//            vector width, so no bit-exact reproduction exists);
//   alphas = 1 − betas, in float32;
//   alphas_cumprod = torch.cumprod(alphas): on the CPU it accumulates in double (ATen
//            cpu/ReduceOpsKernel.cpp cumprod_cpu_kernel, acc_type<float, false> = double) and
//            rounds each output to float32, which is what this loop does.

import { type SchedulerConfig, trainingBetas } from './common.ts';

export interface Float32Schedule {
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
}

export function float32Schedule(config: SchedulerConfig): Float32Schedule {
  const n = config.num_train_timesteps ?? 1000;
  // Float32Array.from rounds to nearest-even, as torch.tensor(…, dtype=float32) does.
  const betas = Float32Array.from(trainingBetas(config, n));
  const alphas = new Float32Array(n);
  const alphasCumprod = new Float32Array(n);
  let product = 1;
  for (let t = 0; t < n; t++) {
    // 1 − β is exact in float64 for a float32 β, so storing it rounds once, as float32 subtraction does.
    alphas[t] = 1 - betas[t];
    product *= alphas[t];
    alphasCumprod[t] = product;
  }
  return { betas, alphas, alphasCumprod };
}
