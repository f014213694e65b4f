// EulerDiscreteScheduler (Karras et al. 2022, Algorithm 2 with s_churn = 0), as diffusers
// implements it in src/diffusers/schedulers/scheduling_euler_discrete.py. Deterministic: no noise
// is added after the initial latents. Pure: built from the parsed scheduler_config.json.

import {
  interpolate,
  karrasSigmas,
  linspace,
  type PredictionType,
  requireSteps,
  roundHalfEven,
  type Scheduler,
  type SchedulerConfig,
  sigmaToTimestep,
  trainingSigmas,
} from './common.ts';

export { trainingSigmas };

export interface EulerScheduler extends Scheduler {
  /** σ for each step plus a final σ (0 unless final_sigmas_type is sigma_min): length steps + 1. */
  readonly sigmas: Float64Array;
  readonly predictionType: PredictionType;
}

/** Training timesteps for `steps` inference steps under the config's timestep_spacing. */
export function eulerTimesteps(config: SchedulerConfig, steps: number): Float64Array {
  const n = config.num_train_timesteps ?? 1000;
  const spacing = config.timestep_spacing ?? 'linspace';
  const out = new Float64Array(steps);
  if (spacing === 'linspace') {
    const values = linspace(0, n - 1, steps);
    for (let i = 0; i < steps; i++) out[i] = Math.fround(values[steps - 1 - i]);
  } else if (spacing === 'leading') {
    const ratio = Math.floor(n / steps);
    const offset = config.steps_offset ?? 0;
    for (let i = 0; i < steps; i++) out[i] = (steps - 1 - i) * ratio + offset;
  } else {
    // np.arange(n, 0, -n / steps).round() - 1
    const ratio = n / steps;
    for (let i = 0; i < steps; i++) out[i] = roundHalfEven(n - i * ratio) - 1;
  }
  return out;
}

export interface EulerSigmaSchedule {
  timesteps: Float64Array;
  /** Length steps + 1; the last is `finalSigma`. */
  sigmas: Float64Array;
  initNoiseSigma: number;
}

/**
 * The σ schedule shared by the Euler samplers: σ interpolated at the spaced timesteps, or with
 * use_karras_sigmas the ρ = 7 ramp between the first and last of those σ (timesteps then mapped
 * back from σ, so they may be fractional).
 */
export function eulerSigmaSchedule(
  config: SchedulerConfig,
  steps: number,
  finalSigma: 'zero' | 'sigma_min',
): EulerSigmaSchedule {
  requireSteps(steps);
  const table = trainingSigmas(config);
  let timesteps: Float64Array = eulerTimesteps(config, steps);
  let stepSigmas: Float64Array = timesteps.map((t) => interpolate(table, t));
  if (config.use_karras_sigmas) {
    stepSigmas = karrasSigmas(stepSigmas[0], stepSigmas[steps - 1], steps);
    const logSigmas = table.map(Math.log);
    timesteps = stepSigmas.map((s) => sigmaToTimestep(s, logSigmas));
  }

  const sigmas = new Float64Array(steps + 1);
  sigmas.set(stepSigmas);
  sigmas[steps] = finalSigma === 'sigma_min' ? table[0] : 0;

  let maxSigma = 0;
  for (const s of sigmas) maxSigma = Math.max(maxSigma, s);
  const spacing = config.timestep_spacing ?? 'linspace';
  // diffusers: init_noise_sigma is max σ for linspace/trailing, sqrt(max σ² + 1) otherwise.
  const initNoiseSigma =
    spacing === 'linspace' || spacing === 'trailing' ? maxSigma : Math.sqrt(maxSigma ** 2 + 1);
  return { timesteps, sigmas, initNoiseSigma };
}

export function eulerScheduler(config: SchedulerConfig, steps: number): EulerScheduler {
  const { timesteps, sigmas, initNoiseSigma } = eulerSigmaSchedule(
    config,
    steps,
    config.final_sigmas_type ?? 'zero',
  );
  const predictionType = config.prediction_type ?? 'epsilon';

  return {
    name: 'EulerDiscreteScheduler',
    timesteps,
    sigmas,
    initNoiseSigma,
    predictionType,
    inputScale: (step) => 1 / Math.sqrt(sigmas[step] ** 2 + 1),
    step: (step, latents, modelOutput) =>
      eulerStep(latents, modelOutput, sigmas[step], sigmas[step + 1], predictionType),
  };
}

/**
 * One Euler step in place: x ← x + (σ_next − σ)·d with d = (x − x̂₀)/σ. For epsilon prediction
 * d is the model output itself.
 */
export function eulerStep(
  latents: Float32Array,
  modelOutput: Float32Array,
  sigma: number,
  sigmaNext: number,
  predictionType: PredictionType,
): void {
  const dt = sigmaNext - sigma;
  const n = latents.length;
  if (predictionType === 'epsilon') {
    for (let i = 0; i < n; i++) latents[i] += dt * modelOutput[i];
    return;
  }
  const slope = dt / sigma;
  if (predictionType === 'v_prediction') {
    // x̂₀ = v·(−σ/√(σ²+1)) + x/(σ²+1)
    const c0 = -sigma / Math.sqrt(sigma * sigma + 1);
    const c1 = 1 / (sigma * sigma + 1);
    for (let i = 0; i < n; i++) {
      const x = latents[i];
      latents[i] = x + slope * (x - (modelOutput[i] * c0 + x * c1));
    }
  } else {
    for (let i = 0; i < n; i++) {
      const x = latents[i];
      latents[i] = x + slope * (x - modelOutput[i]);
    }
  }
}
