// EulerAncestralDiscreteScheduler ("Euler a"), as diffusers implements it in
// src/diffusers/schedulers/scheduling_euler_ancestral_discrete.py after k-diffusion's
// sample_euler_ancestral (eta = 1): each step is split into a deterministic Euler step down to
// σ_down and fresh Gaussian noise of standard deviation σ_up, with σ_down² + σ_up² = σ_next².
// Same σ schedule, timesteps, init_noise_sigma and input scaling as Euler.
//
// use_karras_sigmas: diffusers' EulerAncestralDiscreteScheduler has no such option; Easel applies
// EulerDiscreteScheduler's Karras ramp (the sampler formula is independent of the σ schedule, as
// in k-diffusion). final_sigmas_type is not read: the last step always ends at σ = 0.

import {
  type NoiseSource,
  type PredictionType,
  requireNoise,
  type Scheduler,
  type SchedulerConfig,
  type SchedulerOptions,
  scratchBuffer,
} from './common.ts';
import { eulerSigmaSchedule } from './euler.ts';

export interface EulerAncestralScheduler extends Scheduler {
  /** σ for each step plus the final 0: length steps + 1. */
  readonly sigmas: Float64Array;
  readonly predictionType: PredictionType;
}

/** σ_up = sqrt(σ_next²·(σ² − σ_next²)/σ²) and σ_down = sqrt(σ_next² − σ_up²). */
export function ancestralSigmas(sigma: number, sigmaNext: number): { up: number; down: number } {
  const up = Math.sqrt((sigmaNext ** 2 * (sigma ** 2 - sigmaNext ** 2)) / sigma ** 2);
  const down = Math.sqrt(Math.max(sigmaNext ** 2 - up ** 2, 0));
  return { up, down };
}

export function eulerAncestralScheduler(
  config: SchedulerConfig,
  steps: number,
  options: SchedulerOptions = {},
): EulerAncestralScheduler {
  const noise: NoiseSource = requireNoise(options, 'EulerAncestralDiscreteScheduler');
  const { timesteps, sigmas, initNoiseSigma } = eulerSigmaSchedule(config, steps, 'zero');
  const predictionType = config.prediction_type ?? 'epsilon';
  const split = Array.from({ length: steps }, (_, i) => ancestralSigmas(sigmas[i], sigmas[i + 1]));
  const noiseBuffer = scratchBuffer();

  return {
    name: 'EulerAncestralDiscreteScheduler',
    timesteps,
    sigmas,
    initNoiseSigma,
    predictionType,
    inputScale: (step) => 1 / Math.sqrt(sigmas[step] ** 2 + 1),
    step(step, latents, modelOutput) {
      const { up, down } = split[step];
      // σ_up is 0 on the step to σ = 0: no noise is drawn there.
      let fresh: Float32Array | undefined;
      if (up > 0) {
        fresh = noiseBuffer(latents.length);
        noise(fresh);
      }
      eulerAncestralStep(latents, modelOutput, fresh, sigmas[step], down, up, predictionType);
    },
  };
}

/**
 * One ancestral step in place: x ← x + (σ_down − σ)·d + σ_up·z with d = (x − x̂₀)/σ and z the
 * fresh noise (omitted when σ_up is 0).
 */
export function eulerAncestralStep(
  latents: Float32Array,
  modelOutput: Float32Array,
  noise: Float32Array | undefined,
  sigma: number,
  sigmaDown: number,
  sigmaUp: number,
  predictionType: PredictionType,
): void {
  const n = latents.length;
  const slope = (sigmaDown - sigma) / sigma;
  // x̂₀ = a·x + b·output for every prediction type (epsilon: x − σ·ε).
  let a = 1;
  let b = -sigma;
  if (predictionType === 'v_prediction') {
    a = 1 / (sigma * sigma + 1);
    b = -sigma / Math.sqrt(sigma * sigma + 1);
  } else if (predictionType === 'sample') {
    a = 0;
    b = 1;
  }
  // x + slope·(x − x̂₀) = (1 + slope·(1 − a))·x − slope·b·output
  const cx = 1 + slope * (1 - a);
  const co = -slope * b;
  if (noise) {
    for (let i = 0; i < n; i++) latents[i] = cx * latents[i] + co * modelOutput[i] + sigmaUp * noise[i];
  } else {
    for (let i = 0; i < n; i++) latents[i] = cx * latents[i] + co * modelOutput[i];
  }
}
