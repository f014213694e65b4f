// DDPMScheduler as the Kandinsky 2.2 decoder uses it (diffusers schedulers/scheduling_ddpm.py;
// kandinsky-2-2-decoder/scheduler: linear β 0.00085 → 0.012, steps_offset 1, clip_sample false,
// epsilon, thresholding false; variance_type and timestep_spacing left at "fixed_small" and
// "leading"). An ancestral DDPM posterior sampler (posterior.ts) on the float32 training tables
// (float32-schedule.ts): fresh noise at every step with t > 0, which with steps_offset 1 includes
// the last step (t = 1 → −1), where σ is only the 1e-20 variance floor's 1e-10.
// No input scaling, unit initial noise. Defaults are DDPMScheduler's: clip_sample true (range 1).

import {
  type NoiseSource,
  type PredictionType,
  requireNoise,
  requireSteps,
  type SchedulerConfig,
  type SchedulerOptions,
} from './common.ts';
import { ddimTimesteps } from './ddim.ts';
import { type Float32Schedule, float32Schedule } from './float32-schedule.ts';
import {
  type PosteriorScheduler,
  type PosteriorStep,
  posteriorScheduler,
  posteriorStep,
  varianceType,
} from './posterior.ts';

export type DdpmScheduler = PosteriorScheduler;

/**
 * DDPMScheduler.set_timesteps spaces timesteps exactly as DDIMScheduler.set_timesteps does
 * ("leading" by default: T//N·k + steps_offset, reversed; 991, 981, …, 1 for N = 100, offset 1).
 */
export function ddpmTimesteps(config: SchedulerConfig, steps: number): Float64Array {
  requireSteps(steps);
  const n = config.num_train_timesteps ?? 1000;
  if (steps > n) throw new RangeError(`steps (${steps}) cannot exceed num_train_timesteps (${n})`);
  return ddimTimesteps(config, steps);
}

/**
 * DDPMScheduler.step coefficients from t to prev (DDPMScheduler.previous_timestep: the next
 * timestep, −1 after the last): ᾱ_prev = 1 for prev < 0, α = ᾱ_t/ᾱ_prev, β = 1 − α.
 */
export function ddpmStep(
  schedule: Float32Schedule,
  t: number,
  prev: number,
  predictionType: PredictionType,
): PosteriorStep {
  const alphaBar = schedule.alphasCumprod[t];
  const alphaBarPrev = prev >= 0 ? schedule.alphasCumprod[prev] : 1;
  const alpha = alphaBar / alphaBarPrev;
  return posteriorStep(t, prev, alphaBar, alphaBarPrev, 1 - alpha, alpha, predictionType);
}

export function ddpmScheduler(
  config: SchedulerConfig,
  steps: number,
  options: SchedulerOptions = {},
): DdpmScheduler {
  const noise: NoiseSource = requireNoise(options, 'DDPMScheduler');
  // fixed_small adds √max(v, 1e-20)·z; fixed_small_log adds exp(½·log(max(v, 1e-20)))·z, the same
  // σ. The learned variances need the UNet's variance channels, which the pipelines drop.
  varianceType(config, ['fixed_small', 'fixed_small_log'], 'fixed_small', 'DDPMScheduler');
  const predictionType = config.prediction_type ?? 'epsilon';
  const clipRange = (config.clip_sample ?? true) ? (config.clip_sample_range ?? 1) : Number.POSITIVE_INFINITY;

  const timesteps = ddpmTimesteps(config, steps);
  const schedule = float32Schedule(config);
  return posteriorScheduler({
    name: 'DDPMScheduler',
    timesteps,
    schedule,
    predictionType,
    clipRange,
    noise,
    stepFrom: (t, prev) => ddpmStep(schedule, t, prev, predictionType),
  });
}
