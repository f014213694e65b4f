// LCMScheduler (Latent Consistency Models, Luo et al. 2023), as diffusers implements it in
// src/diffusers/schedulers/scheduling_lcm.py: its own timestep selection from the distillation
// schedule (original_inference_steps, default 50), the consistency-model boundary condition
// denoised = c_skip·x + c_out·x̂₀, and fresh noise re-injected between steps
// x ← √ᾱ_prev·denoised + √(1 − ᾱ_prev)·z (none after the last step). No input scaling, unit
// initial noise. Pure: built from the parsed scheduler_config.json.

import {
  alphasCumprod,
  type NoiseSource,
  type PredictionType,
  requireNoise,
  requireSteps,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerOptions,
  scratchBuffer,
} from './common.ts';

export interface LcmScheduler extends Scheduler {
  readonly predictionType: PredictionType;
}

/** The most steps LCM can run: its timesteps are a subset of the original_inference_steps schedule. */
export function lcmMaxSteps(config: SchedulerConfig): number {
  return Math.min(config.original_inference_steps ?? 50, config.num_train_timesteps ?? 1000);
}

/**
 * diffusers' LCM set_timesteps: the distillation schedule is k·[1, 2, …, original] − 1 with
 * k = num_train_timesteps // original (19, 39, …, 999 for the defaults); reversed, and
 * `steps` entries taken at floor(np.linspace(0, original, steps, endpoint=False)).
 */
export function lcmTimesteps(config: SchedulerConfig, steps: number): Float64Array {
  requireSteps(steps);
  const n = config.num_train_timesteps ?? 1000;
  const original = config.original_inference_steps ?? 50;
  if (original > n)
    throw new RangeError(`original_inference_steps (${original}) cannot exceed num_train_timesteps (${n})`);
  if (steps > original)
    throw new RangeError(`steps (${steps}) cannot exceed original_inference_steps (${original})`);
  const k = Math.floor(n / original);
  const stride = original / steps;
  const out = new Float64Array(steps);
  for (let i = 0; i < steps; i++) {
    const index = Math.floor(i * stride);
    // Reversed schedule entry `index` is k·(original − index) − 1.
    out[i] = k * (original - index) - 1;
  }
  return out;
}

/** Consistency-model boundary scalings at timestep t (σ_data = 0.5, t scaled by timestep_scaling). */
export function lcmScalings(t: number, timestepScaling: number): { cSkip: number; cOut: number } {
  const sigmaData = 0.5;
  const scaled = t * timestepScaling;
  return {
    cSkip: sigmaData ** 2 / (scaled ** 2 + sigmaData ** 2),
    cOut: scaled / Math.sqrt(scaled ** 2 + sigmaData ** 2),
  };
}

export function lcmScheduler(
  config: SchedulerConfig,
  steps: number,
  options: SchedulerOptions = {},
): LcmScheduler {
  const noise: NoiseSource = requireNoise(options, 'LCMScheduler');
  const timesteps = lcmTimesteps(config, steps);
  const ac = alphasCumprod(config);
  const predictionType = config.prediction_type ?? 'epsilon';
  const clip = config.clip_sample ?? false;
  const clipRange = config.clip_sample_range ?? 1;
  const timestepScaling = config.timestep_scaling ?? 10;
  const noiseBuffer = scratchBuffer();

  // Per-step coefficients, computed once: x̂₀ = a·x + b·output, then
  // denoised = c_out·x̂₀ + c_skip·x, then x ← √ᾱ_prev·denoised + √(1 − ᾱ_prev)·z.
  const coefficients = Array.from(timesteps, (t, i) => {
    const alpha = ac[t];
    const { cSkip, cOut } = lcmScalings(t, timestepScaling);
    let a = 1 / Math.sqrt(alpha);
    let b = -Math.sqrt(1 - alpha) / Math.sqrt(alpha);
    if (predictionType === 'v_prediction') {
      a = Math.sqrt(alpha);
      b = -Math.sqrt(1 - alpha);
    } else if (predictionType === 'sample') {
      a = 0;
      b = 1;
    }
    const last = i === steps - 1;
    const alphaPrev = last ? alpha : ac[timesteps[i + 1]];
    return { a, b, cSkip, cOut, last, keep: Math.sqrt(alphaPrev), spread: Math.sqrt(1 - alphaPrev) };
  });

  return {
    name: 'LCMScheduler',
    timesteps,
    initNoiseSigma: 1,
    predictionType,
    inputScale: () => 1,
    step(step, latents, modelOutput) {
      const { a, b, cSkip, cOut, last, keep, spread } = coefficients[step];
      const n = latents.length;
      let fresh: Float32Array | undefined;
      if (!last) {
        fresh = noiseBuffer(n);
        noise(fresh);
      }
      for (let i = 0; i < n; i++) {
        const x = latents[i];
        let x0 = a * x + b * modelOutput[i];
        if (clip) x0 = Math.min(Math.max(x0, -clipRange), clipRange);
        const denoised = cOut * x0 + cSkip * x;
        latents[i] = fresh ? keep * denoised + spread * fresh[i] : denoised;
      }
    },
  };
}
