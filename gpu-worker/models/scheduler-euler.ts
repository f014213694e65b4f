// EulerDiscreteScheduler (Karras et al. 2022, Algorithm 2 with s_churn = 0), as diffusers
// implements it in src/diffusers/schedulers/scheduling_euler_discrete.py. Deterministic: no noise
// is added after the initial latents. Pure: built from the parsed scheduler_config.json.

import {
  alphasCumprod,
  linspace,
  type PredictionType,
  roundHalfEven,
  type Scheduler,
  type SchedulerConfig,
} from './scheduler-common.ts';

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

/** σ(t) = sqrt((1 - ᾱ_t) / ᾱ_t) for every training timestep t. */
export function trainingSigmas(config: SchedulerConfig): Float64Array {
  const ac = alphasCumprod(config);
  return ac.map((a) => Math.sqrt((1 - a) / a));
}

/** numpy.interp(t, arange(len(table)), table): linear interpolation at fractional timesteps. */
function interpolate(table: Float64Array, t: number): number {
  if (t <= 0) return table[0];
  if (t >= table.length - 1) return table[table.length - 1];
  const low = Math.floor(t);
  return table[low] + (table[low + 1] - table[low]) * (t - low);
}

/** diffusers' _sigma_to_t: the (fractional) timestep whose log σ matches, for Karras sigmas. */
function sigmaToTimestep(sigma: number, logSigmas: Float64Array): number {
  const logSigma = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigmas[i] <= logSigma) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const w = Math.min(Math.max((logSigmas[low] - logSigma) / (logSigmas[low] - logSigmas[low + 1]), 0), 1);
  return (1 - w) * low + w * (low + 1);
}

export function eulerScheduler(config: SchedulerConfig, steps: number): EulerScheduler {
  if (!Number.isInteger(steps) || steps < 1)
    throw new RangeError(`steps must be a positive integer, got ${steps}`);
  const table = trainingSigmas(config);
  let timesteps = eulerTimesteps(config, steps);
  let stepSigmas = timesteps.map((t) => interpolate(table, t));

  if (config.use_karras_sigmas) {
    const rho = 7;
    const minInv = stepSigmas[steps - 1] ** (1 / rho);
    const maxInv = stepSigmas[0] ** (1 / rho);
    const ramp = linspace(0, 1, steps);
    stepSigmas = ramp.map((r) => (maxInv + r * (minInv - maxInv)) ** rho);
    const logSigmas = table.map(Math.log);
    timesteps = stepSigmas.map((s) => sigmaToTimestep(s, logSigmas));
  }

  const sigmas = new Float64Array(steps + 1);
  sigmas.set(stepSigmas);
  sigmas[steps] = config.final_sigmas_type === 'sigma_min' ? table[0] : 0;

  let maxSigma = 0;
  for (const s of sigmas) maxSigma = Math.max(maxSigma, s);
  const spacing = config.timestep_spacing ?? 'linspace';
  // diffusers: init_noise_sigma is max σ for linspace/trailing, sqrt(max σ² + 1) otherwise.
  const initNoiseSigma =
    spacing === 'linspace' || spacing === 'trailing' ? maxSigma : Math.sqrt(maxSigma ** 2 + 1);
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
  } else if (predictionType === 'v_prediction') {
    // x̂₀ = v·(−σ/√(σ²+1)) + x/(σ²+1)
    const c0 = -sigma / Math.sqrt(sigma * sigma + 1);
    const c1 = 1 / (sigma * sigma + 1);
    for (let i = 0; i < n; i++) {
      const x = latents[i];
      const x0 = modelOutput[i] * c0 + x * c1;
      latents[i] = x + (dt * (x - x0)) / sigma;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const x = latents[i];
      latents[i] = x + (dt * (x - modelOutput[i])) / sigma;
    }
  }
}
