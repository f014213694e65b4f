// UnCLIPScheduler as the Kandinsky 2.1/2.2 prior uses it (diffusers
// schedulers/scheduling_unclip.py; kandinsky-2-{1,2}-prior/scheduler: clip_sample true, range 10,
// prediction_type "sample", variance_type "fixed_small_log", squaredcos_cap_v2 betas by default).
// A DDPM posterior sampler (posterior.ts) that recomputes β for the timesteps it skips, on the
// float32 training tables (float32-schedule.ts). It works on any Float32Array: the prior's image
// embedding is [B, 768] (2.1) or [B, 1280] (2.2). No input scaling, unit initial noise.

import {
  type NoiseSource,
  type PredictionType,
  requireNoise,
  roundHalfEven,
  type SchedulerConfig,
  type SchedulerOptions,
} from './common.ts';
import { type Float32Schedule, float32Schedule } from './float32-schedule.ts';
import {
  type PosteriorScheduler,
  type PosteriorStep,
  posteriorScheduler,
  posteriorStep,
  varianceType,
} from './posterior.ts';

export type UnclipScheduler = PosteriorScheduler;

/**
 * UnCLIPScheduler.set_timesteps: r = (T − 1)/(N − 1), t_k = numpy.round(k·r) (halves to even),
 * reversed. N = 25 gives 999, 957, 916, 874, 832, …, 166, 125, 83, 42, 0.
 */
export function unclipTimesteps(config: SchedulerConfig, steps: number): Float64Array {
  const n = config.num_train_timesteps ?? 1000;
  // diffusers divides by N − 1 (ZeroDivisionError at 1); beyond T the timesteps would repeat.
  if (!Number.isInteger(steps) || steps < 2)
    throw new RangeError(`UnCLIPScheduler needs an integer number of steps ≥ 2, got ${steps}`);
  if (steps > n) throw new RangeError(`steps (${steps}) cannot exceed num_train_timesteps (${n})`);
  const ratio = (n - 1) / (steps - 1);
  const out = new Float64Array(steps);
  for (let i = 0; i < steps; i++) out[i] = roundHalfEven((steps - 1 - i) * ratio);
  return out;
}

/**
 * The UnCLIPScheduler.step coefficients from t to prev (−1 after the last step): ᾱ_prev = 1 for
 * prev < 0; β = β_t and α = α_t from the tables when prev = t − 1, else β = 1 − ᾱ_t/ᾱ_prev, α = 1 − β.
 */
export function unclipStep(
  schedule: Float32Schedule,
  t: number,
  prev: number,
  predictionType: PredictionType,
): PosteriorStep {
  const alphaBar = schedule.alphasCumprod[t];
  const alphaBarPrev = prev >= 0 ? schedule.alphasCumprod[prev] : 1;
  const adjacent = prev === t - 1;
  const beta = adjacent ? schedule.betas[t] : 1 - alphaBar / alphaBarPrev;
  const alpha = adjacent ? schedule.alphas[t] : 1 - beta;
  return posteriorStep(t, prev, alphaBar, alphaBarPrev, beta, alpha, predictionType);
}

export function unclipScheduler(
  config: SchedulerConfig,
  steps: number,
  options: SchedulerOptions = {},
): UnclipScheduler {
  const noise: NoiseSource = requireNoise(options, 'UnCLIPScheduler');
  const n = config.num_train_timesteps ?? 1000;
  if ((config.beta_schedule ?? 'squaredcos_cap_v2') !== 'squaredcos_cap_v2')
    throw new Error('beta_schedule: UnCLIPScheduler only supports squaredcos_cap_v2');
  const predictionType = config.prediction_type ?? 'epsilon';
  if (predictionType === 'v_prediction')
    throw new Error('prediction_type: UnCLIPScheduler supports epsilon and sample');
  // fixed_small_log's σ = exp(½·log(max(v, 1e-20))) = √max(v, 1e-20); learned_range needs the
  // model's variance output, which the Kandinsky prior does not have.
  varianceType(config, ['fixed_small_log'], 'fixed_small_log', 'UnCLIPScheduler');
  const clipRange = (config.clip_sample ?? true) ? (config.clip_sample_range ?? 1) : Number.POSITIVE_INFINITY;

  const timesteps = unclipTimesteps(config, steps);
  // betas_for_alpha_bar(T) takes only T: beta_start, beta_end and trained_betas do not apply.
  const schedule = float32Schedule({ num_train_timesteps: n, beta_schedule: 'squaredcos_cap_v2' });
  return posteriorScheduler({
    name: 'UnCLIPScheduler',
    timesteps,
    schedule,
    predictionType,
    clipRange,
    noise,
    stepFrom: (t, prev) => unclipStep(schedule, t, prev, predictionType),
  });
}
