// What every noise scheduler shares: the parsed scheduler_config.json, the training noise
// schedule (betas → alphas_cumprod) and the interface the pipelines drive. Pure: no I/O.
// Formulas follow diffusers (src/diffusers/schedulers/scheduling_*.py); diffusers computes in
// float32, this code in float64, so values agree to ~1e-6 relative.

import { z } from 'zod';

/** The fields of a diffusers scheduler_config.json that Easel reads; defaults differ per class. */
const schedulerConfigSchema = z.looseObject({
  _class_name: z.string().optional(),
  num_train_timesteps: z.number().int().positive().optional(),
  beta_start: z.number().positive().optional(),
  beta_end: z.number().positive().optional(),
  beta_schedule: z.enum(['linear', 'scaled_linear', 'squaredcos_cap_v2']).optional(),
  trained_betas: z.array(z.number()).nullish(),
  prediction_type: z.enum(['epsilon', 'v_prediction', 'sample']).optional(),
  timestep_spacing: z.enum(['linspace', 'leading', 'trailing']).optional(),
  steps_offset: z.number().int().nonnegative().optional(),
  interpolation_type: z.enum(['linear']).optional(),
  use_karras_sigmas: z.boolean().nullish(),
  final_sigmas_type: z.enum(['zero', 'sigma_min']).optional(),
  set_alpha_to_one: z.boolean().optional(),
  clip_sample: z.boolean().optional(),
  clip_sample_range: z.number().positive().optional(),
  rescale_betas_zero_snr: z.literal(false).optional(),
  thresholding: z.literal(false).optional(),
  // LCMScheduler
  original_inference_steps: z.number().int().positive().optional(),
  timestep_scaling: z.number().positive().optional(),
  // DPMSolverMultistepScheduler. diffusers writes its default lambda_min_clipped as -Infinity,
  // which the model loader's JSON reader turns into -Infinity (plain z.number() refuses it).
  lower_order_final: z.boolean().optional(),
  euler_at_final: z.boolean().optional(),
  lambda_min_clipped: z.union([z.number(), z.literal(Number.NEGATIVE_INFINITY)]).nullish(),
});

export type SchedulerConfig = z.infer<typeof schedulerConfigSchema>;
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

/** Validates a parsed scheduler_config.json; throws an Error naming the first bad field. */
export function parseSchedulerConfig(raw: unknown): SchedulerConfig {
  const result = schedulerConfigSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new Error(`${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return result.data;
}

/**
 * Fills `out` ([images × C×H×W]) with fresh standard normal values, each image's slice drawn from
 * that image's own stream (random.ts, batchNoise), so stochastic samplers keep the batch rule.
 */
export type NoiseSource = (out: Float32Array) => void;

export interface SchedulerOptions {
  /** Per-step noise; required by the stochastic samplers (Euler ancestral, LCM). */
  noise?: NoiseSource;
}

/**
 * The sampler interface the pipelines drive. One instance per generate() call: `step` must be
 * called for steps 0, 1, …, steps − 1 in order (multistep solvers keep the previous prediction),
 * works in place on the latents and allocates nothing after its first call.
 */
export interface Scheduler {
  /** diffusers class name of the algorithm that runs. */
  readonly name: string;
  /** Training timestep fed to the UNet at each step (may be fractional for some spacings). */
  readonly timesteps: Float64Array;
  /** Standard deviation of the initial noise. */
  readonly initNoiseSigma: number;
  /** Factor the latents are multiplied by before the UNet at `step` (scale_model_input). */
  inputScale(step: number): number;
  /** Advances `latents` in place from `step` to `step + 1` given the UNet's output. */
  step(step: number, latents: Float32Array, modelOutput: Float32Array): void;
}

export function requireSteps(steps: number): void {
  if (!Number.isInteger(steps) || steps < 1)
    throw new RangeError(`steps must be a positive integer, got ${steps}`);
}

export function requireNoise(options: SchedulerOptions, scheduler: string): NoiseSource {
  if (!options.noise) throw new Error(`${scheduler} is stochastic: it needs a noise source`);
  return options.noise;
}

/**
 * A Float32Array allocated at its first use and reused after: schedulers learn the latent size
 * only at their first step.
 */
export function scratchBuffer(): (length: number) => Float32Array {
  let buffer = new Float32Array(0);
  return (length) => {
    if (buffer.length !== length) buffer = new Float32Array(length);
    return buffer;
  };
}

/** Training-time alphas_cumprod (ᾱ_t), t = 0..num_train_timesteps-1. */
export function alphasCumprod(config: SchedulerConfig): Float64Array {
  const n = config.num_train_timesteps ?? 1000;
  const betas = trainingBetas(config, n);
  const out = new Float64Array(n);
  let product = 1;
  for (let t = 0; t < n; t++) {
    product *= 1 - betas[t];
    out[t] = product;
  }
  return out;
}

/** Training betas β_t (float64), t = 0..n-1, for the config's beta_schedule or trained_betas. */
export function trainingBetas(config: SchedulerConfig, n: number): Float64Array {
  if (config.trained_betas) {
    if (config.trained_betas.length !== n)
      throw new Error('trained_betas: length differs from num_train_timesteps');
    return Float64Array.from(config.trained_betas);
  }
  const start = config.beta_start ?? 0.0001;
  const end = config.beta_end ?? 0.02;
  const schedule = config.beta_schedule ?? 'linear';
  const betas = new Float64Array(n);
  if (schedule === 'linear') {
    const values = linspace(start, end, n);
    betas.set(values);
  } else if (schedule === 'scaled_linear') {
    const values = linspace(Math.sqrt(start), Math.sqrt(end), n);
    for (let t = 0; t < n; t++) betas[t] = values[t] * values[t];
  } else {
    // betas_for_alpha_bar with the cosine ᾱ(t) of Nichol & Dhariwal, capped at 0.999.
    const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    for (let t = 0; t < n; t++) betas[t] = Math.min(1 - alphaBar((t + 1) / n) / alphaBar(t / n), 0.999);
  }
  return betas;
}

/** σ(t) = sqrt((1 − ᾱ_t) / ᾱ_t) for every training timestep t (ascending in t). */
export function trainingSigmas(config: SchedulerConfig): Float64Array {
  const ac = alphasCumprod(config);
  return ac.map((a) => Math.sqrt((1 - a) / a));
}

/** numpy.interp(t, arange(len(table)), table): linear interpolation at fractional timesteps. */
export function interpolate(table: Float64Array, t: number): number {
  if (t <= 0) return table[0];
  if (t >= table.length - 1) return table[table.length - 1];
  const low = Math.floor(t);
  return table[low] + (table[low + 1] - table[low]) * (t - low);
}

/** diffusers' _sigma_to_t: the (fractional) timestep whose log σ matches, by interpolation in log σ. */
export function sigmaToTimestep(sigma: number, logSigmas: Float64Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigmas[i] <= logSigma) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const w = Math.min(Math.max((logSigmas[low] - logSigma) / (logSigmas[low] - logSigmas[low + 1]), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

/**
 * diffusers' _convert_to_karras (Karras et al. 2022, eq. 5, ρ = 7): `steps` σ from σ_max down to
 * σ_min, evenly spaced in σ^(1/ρ).
 */
export function karrasSigmas(sigmaMax: number, sigmaMin: number, steps: number): Float64Array {
  const rho = 7;
  const maxInv = sigmaMax ** (1 / rho);
  const minInv = sigmaMin ** (1 / rho);
  return linspace(0, 1, steps).map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** numpy.linspace(start, stop, num) with endpoint=True. */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = start + i * step;
  out[num - 1] = stop;
  return out;
}

/** numpy.round: halves go to the even neighbour (diffusers' trailing spacing relies on it). */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}
