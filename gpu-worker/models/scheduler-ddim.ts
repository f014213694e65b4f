// DDIMScheduler with eta = 0 (deterministic), as diffusers implements it in
// src/diffusers/schedulers/scheduling_ddim.py. Pure: built from the parsed scheduler_config.json.

import {
  alphasCumprod,
  linspace,
  type PredictionType,
  roundHalfEven,
  type Scheduler,
  type SchedulerConfig,
} from './scheduler-common.ts';

export interface DdimScheduler extends Scheduler {
  readonly predictionType: PredictionType;
}

export function ddimTimesteps(config: SchedulerConfig, steps: number): Float64Array {
  const n = config.num_train_timesteps ?? 1000;
  const spacing = config.timestep_spacing ?? 'leading';
  const out = new Float64Array(steps);
  if (spacing === 'linspace') {
    const values = linspace(0, n - 1, steps);
    for (let i = 0; i < steps; i++) out[i] = roundHalfEven(values[steps - 1 - i]);
  } else if (spacing === 'leading') {
    const ratio = Math.floor(n / steps);
    const offset = config.steps_offset ?? 0;
    for (let i = 0; i < steps; i++) out[i] = (steps - 1 - i) * ratio + offset;
  } else {
    const ratio = n / steps;
    for (let i = 0; i < steps; i++) out[i] = roundHalfEven(n - i * ratio) - 1;
  }
  return out;
}

export function ddimScheduler(config: SchedulerConfig, steps: number): DdimScheduler {
  if (!Number.isInteger(steps) || steps < 1)
    throw new RangeError(`steps must be a positive integer, got ${steps}`);
  const n = config.num_train_timesteps ?? 1000;
  if (steps > n) throw new RangeError(`steps (${steps}) cannot exceed num_train_timesteps (${n})`);
  const ac = alphasCumprod(config);
  const timesteps = ddimTimesteps(config, steps);
  const finalAlpha = (config.set_alpha_to_one ?? true) ? 1 : ac[0];
  const ratio = Math.floor(n / steps);
  const predictionType = config.prediction_type ?? 'epsilon';
  const clip = config.clip_sample ?? true;
  const clipRange = config.clip_sample_range ?? 1;

  return {
    name: 'DDIMScheduler',
    timesteps,
    initNoiseSigma: 1,
    predictionType,
    inputScale: () => 1,
    step(step, latents, modelOutput) {
      const t = timesteps[step];
      const prev = t - ratio;
      const alpha = ac[t];
      const alphaPrev = prev >= 0 ? ac[prev] : finalAlpha;
      const sqrtA = Math.sqrt(alpha);
      const sqrtB = Math.sqrt(1 - alpha);
      const sqrtAPrev = Math.sqrt(alphaPrev);
      const dirCoef = Math.sqrt(1 - alphaPrev);
      for (let i = 0; i < latents.length; i++) {
        const x = latents[i];
        const out = modelOutput[i];
        let x0: number;
        let eps: number;
        if (predictionType === 'epsilon') {
          x0 = (x - sqrtB * out) / sqrtA;
          eps = out;
        } else if (predictionType === 'v_prediction') {
          x0 = sqrtA * x - sqrtB * out;
          eps = sqrtA * out + sqrtB * x;
        } else {
          x0 = out;
          eps = (x - sqrtA * out) / sqrtB;
        }
        // diffusers clips x̂₀ but keeps the unclipped ε (use_clipped_model_output = False).
        if (clip) x0 = Math.min(Math.max(x0, -clipRange), clipRange);
        latents[i] = sqrtAPrev * x0 + dirCoef * eps;
      }
    },
  };
}
