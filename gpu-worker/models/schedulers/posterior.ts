// The ancestral DDPM-posterior step that DDPMScheduler and UnCLIPScheduler share (Ho et al. 2020,
// eq. 6–7; diffusers schedulers/scheduling_ddpm.py DDPMScheduler.step and _get_variance,
// schedulers/scheduling_unclip.py UnCLIPScheduler.step and _get_variance). From x_t at timestep t
// to the next timestep `prev` (−1 after the last):
//   x̂₀ = a·x_t + b·output                        (the prediction type; then clamped if configured)
//   x_prev = c₀·x̂₀ + c₁·x_t + σ·z                 (z only when t > 0)
//   c₀ = √ᾱ_prev·β/(1 − ᾱ_t),  c₁ = √α·(1 − ᾱ_prev)/(1 − ᾱ_t),  σ² = max(β·(1 − ᾱ_prev)/(1 − ᾱ_t), 1e-20)
// with ᾱ_prev = 1 for prev < 0 and β = 1 − ᾱ_t/ᾱ_prev, α = 1 − β (the skipped steps' combined β).
// The scalars are worked out once per step in float64 from the float32 tables (float32-schedule.ts).

import {
  type NoiseSource,
  type PredictionType,
  type Scheduler,
  type SchedulerConfig,
  scratchBuffer,
} from './common.ts';
import type { Float32Schedule } from './float32-schedule.ts';

/** A sampler made of posterior steps (DDPMScheduler, UnCLIPScheduler), with its tables for tests. */
export interface PosteriorScheduler extends Scheduler {
  readonly predictionType: PredictionType;
  /** The float32 training tables, indexed by timestep. */
  readonly schedule: Float32Schedule;
  /** Each step's coefficients (t, prev, x̂₀ and posterior coefficients, σ). */
  readonly coefficients: readonly PosteriorStep[];
}

/**
 * The scheduler both samplers are: coefficients worked out once from t to the next timestep (−1
 * after the last) by `stepFrom`, then each step applied in place, with fresh noise from the
 * request's seeded source into one reused buffer on the steps that draw it.
 */
export function posteriorScheduler(parts: {
  name: string;
  timesteps: Float64Array;
  schedule: Float32Schedule;
  predictionType: PredictionType;
  clipRange: number;
  noise: NoiseSource;
  stepFrom(t: number, prev: number): PosteriorStep;
}): PosteriorScheduler {
  const { timesteps, clipRange, noise } = parts;
  const coefficients = Array.from(timesteps, (t, i) =>
    parts.stepFrom(t, i + 1 < timesteps.length ? timesteps[i + 1] : -1),
  );
  const noiseBuffer = scratchBuffer();
  return {
    name: parts.name,
    timesteps,
    initNoiseSigma: 1,
    predictionType: parts.predictionType,
    schedule: parts.schedule,
    coefficients,
    inputScale: () => 1,
    step(step, latents, modelOutput) {
      const k = coefficients[step];
      let fresh: Float32Array | undefined;
      if (k.noisy) {
        fresh = noiseBuffer(latents.length);
        noise(fresh);
      }
      applyPosteriorStep(k, latents, modelOutput, fresh, clipRange);
    },
  };
}

/** One step's coefficients, computed when the scheduler is built. */
export interface PosteriorStep {
  /** Timestep fed to the model. */
  readonly t: number;
  /** Timestep the step lands on; −1 after the last. */
  readonly prev: number;
  /** x̂₀ = a·x + b·output. */
  readonly a: number;
  readonly b: number;
  /** μ = c0·x̂₀ + c1·x. */
  readonly c0: number;
  readonly c1: number;
  /** Standard deviation of the added noise. */
  readonly sigma: number;
  /** diffusers draws noise exactly when t > 0 (even where σ is only the 1e-10 floor). */
  readonly noisy: boolean;
}

/** x̂₀ = a·x + b·output at ᾱ_t for each prediction type (step's "2. compute predicted original sample"). */
export function x0Coefficients(predictionType: PredictionType, alphaBar: number): { a: number; b: number } {
  const sqrtA = Math.sqrt(alphaBar);
  const sqrtB = Math.sqrt(1 - alphaBar);
  if (predictionType === 'sample') return { a: 0, b: 1 };
  if (predictionType === 'v_prediction') return { a: sqrtA, b: -sqrtB };
  return { a: 1 / sqrtA, b: -sqrtB / sqrtA };
}

/**
 * The coefficients of the step from t to prev, given ᾱ_t, ᾱ_prev and the step's β and α (callers
 * differ in how they get β: UnCLIP takes the table's β_t when prev = t − 1).
 */
export function posteriorStep(
  t: number,
  prev: number,
  alphaBar: number,
  alphaBarPrev: number,
  beta: number,
  alpha: number,
  predictionType: PredictionType,
): PosteriorStep {
  const { a, b } = x0Coefficients(predictionType, alphaBar);
  const c0 = (Math.sqrt(alphaBarPrev) * beta) / (1 - alphaBar);
  const c1 = (Math.sqrt(alpha) * (1 - alphaBarPrev)) / (1 - alphaBar);
  const variance = Math.max(((1 - alphaBarPrev) / (1 - alphaBar)) * beta, 1e-20);
  return { t, prev, a, b, c0, c1, sigma: Math.sqrt(variance), noisy: t > 0 };
}

/**
 * Applies one step in place: latents ← c0·clamp(a·x + b·output, ±clipRange) + c1·x + σ·z.
 * `noise` is this step's z (undefined when the step draws none); pass clipRange = Infinity for
 * no clipping. `modelOutput` must be latent-shaped: split any learned-variance channels off first.
 */
export function applyPosteriorStep(
  step: PosteriorStep,
  latents: Float32Array,
  modelOutput: Float32Array,
  noise: Float32Array | undefined,
  clipRange: number,
): void {
  const n = latents.length;
  if (modelOutput.length !== n)
    throw new RangeError(`model output has ${modelOutput.length} values, the latents ${n}`);
  const { a, b, c0, c1, sigma } = step;
  for (let i = 0; i < n; i++) {
    const x = latents[i];
    const x0 = Math.min(Math.max(a * x + b * modelOutput[i], -clipRange), clipRange);
    const mean = c0 * x0 + c1 * x;
    latents[i] = noise ? mean + sigma * noise[i] : mean;
  }
}

/**
 * The config's variance_type (not part of the shared schema), checked against what the sampler
 * implements. The learned variances need the model's extra output channels, which Easel drops.
 */
export function varianceType<T extends string>(
  config: SchedulerConfig,
  supported: readonly T[],
  fallback: T,
  scheduler: string,
): T {
  const value = config.variance_type ?? fallback;
  if (typeof value !== 'string' || !(supported as readonly string[]).includes(value)) {
    throw new Error(
      `variance_type: ${scheduler} supports ${supported.join(', ')}, got ${JSON.stringify(value)}`,
    );
  }
  return value as T;
}
