// DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Algorithm 2): diffusers'
// DPMSolverMultistepScheduler with algorithm_type "dpmsolver++", solver_order 2 and solver_type
// "midpoint" (src/diffusers/schedulers/scheduling_dpmsolver_multistep.py), in its σ-based form:
// α_t = 1/√(σ²+1), σ_t = σ·α_t, λ = log α_t − log σ_t. Deterministic, data prediction (x̂₀).
//
// Easel runs exactly this variant for every DPMSolverMultistepScheduler config: algorithm_type,
// solver_order and solver_type are not read. It honours timestep_spacing, steps_offset,
// lambda_min_clipped, use_karras_sigmas, final_sigmas_type, lower_order_final and euler_at_final.

import {
  interpolate,
  karrasSigmas,
  linspace,
  type PredictionType,
  requireSteps,
  roundHalfEven,
  type Scheduler,
  type SchedulerConfig,
  scratchBuffer,
  sigmaToTimestep,
  trainingSigmas,
} from './common.ts';

export interface DpmSolverScheduler extends Scheduler {
  /** σ for each step plus a final σ (0 unless final_sigmas_type is sigma_min): length steps + 1. */
  readonly sigmas: Float64Array;
  readonly predictionType: PredictionType;
}

/**
 * The last usable training timestep + 1: lambda_min_clipped drops the timesteps whose
 * λ = log(√ᾱ/√(1−ᾱ)) = −log σ is below it (searchsorted on the ascending flipped λ).
 */
function lastTimestep(config: SchedulerConfig, table: Float64Array): number {
  const clip = config.lambda_min_clipped ?? Number.NEGATIVE_INFINITY;
  let clipped = 0;
  for (const sigma of table) if (-Math.log(sigma) < clip) clipped++;
  return table.length - clipped;
}

/** Integer timesteps for `steps` steps (without Karras σ) under the config's timestep_spacing. */
export function dpmSolverTimesteps(config: SchedulerConfig, steps: number): Float64Array {
  requireSteps(steps);
  const table = trainingSigmas(config);
  const n = table.length;
  const last = lastTimestep(config, table);
  const spacing = config.timestep_spacing ?? 'linspace';
  const out = new Float64Array(steps);
  if (spacing === 'linspace') {
    // np.linspace(0, last − 1, steps + 1).round()[::-1][:-1]
    const values = linspace(0, last - 1, steps + 1);
    for (let i = 0; i < steps; i++) out[i] = roundHalfEven(values[steps - i]);
  } else if (spacing === 'leading') {
    // (np.arange(0, steps + 1) · (last // (steps + 1)))[::-1][:-1] + steps_offset
    const ratio = Math.floor(last / (steps + 1));
    const offset = config.steps_offset ?? 0;
    for (let i = 0; i < steps; i++) out[i] = (steps - i) * ratio + offset;
  } else {
    // np.arange(last, 0, −n / steps).round() − 1
    const ratio = n / steps;
    for (let i = 0; i < steps; i++) out[i] = roundHalfEven(last - i * ratio) - 1;
  }
  return out;
}

export function dpmpp2mScheduler(config: SchedulerConfig, steps: number): DpmSolverScheduler {
  requireSteps(steps);
  const table = trainingSigmas(config);
  let timesteps: Float64Array;
  let stepSigmas: Float64Array;
  if (config.use_karras_sigmas) {
    // Unlike Euler, the ramp spans the whole training range: σ(T−1) down to σ(0).
    stepSigmas = karrasSigmas(table[table.length - 1], table[0], steps);
    const logSigmas = table.map(Math.log);
    const cosine = config.beta_schedule === 'squaredcos_cap_v2';
    timesteps = stepSigmas.map((s) => {
      const t = sigmaToTimestep(s, logSigmas);
      return cosine ? t : roundHalfEven(t);
    });
  } else {
    timesteps = dpmSolverTimesteps(config, steps);
    stepSigmas = timesteps.map((t) => interpolate(table, t));
  }
  const finalSigmasType = config.final_sigmas_type ?? 'zero';
  const sigmas = new Float64Array(steps + 1);
  sigmas.set(stepSigmas);
  sigmas[steps] = finalSigmasType === 'sigma_min' ? table[0] : 0;

  const predictionType = config.prediction_type ?? 'epsilon';
  const lowerOrderFinal = config.lower_order_final ?? true;
  const eulerAtFinal = config.euler_at_final ?? false;
  // The last step is first order when diffusers' lower_order_final condition holds.
  const firstOrderFinal = eulerAtFinal || (lowerOrderFinal && steps < 15) || finalSigmasType === 'zero';

  // Per-step coefficients, computed once. With x̂₀ = a·x + b·output (this step's data prediction)
  // and D = x̂₀ (first order) or x̂₀ + (x̂₀ − x̂₀_prev)/(2·r₀) (second order, midpoint):
  // x_next = (σ_t,next/σ_t)·x + α_next·(1 − e^(−h))·D.
  const coefficients = Array.from({ length: steps }, (_, i) => {
    const alpha = 1 / Math.sqrt(sigmas[i] ** 2 + 1);
    const sigmaT = sigmas[i] * alpha;
    let a = 1 / alpha;
    let b = -sigmaT / alpha;
    if (predictionType === 'v_prediction') {
      a = alpha;
      b = -sigmaT;
    } else if (predictionType === 'sample') {
      a = 0;
      b = 1;
    }
    const firstOrder = i === 0 || (i === steps - 1 && firstOrderFinal);
    if (sigmas[i + 1] === 0) {
      // σ_next = 0 only on the last step with final_sigmas_type zero, which is always first
      // order: λ_next = ∞, so the update lands on x̂₀ exactly.
      return { a, b, ratio: 0, weight: 1, secondOrder: 0 };
    }
    const lambda = (s: number) => -Math.log(s);
    const alphaNext = 1 / Math.sqrt(sigmas[i + 1] ** 2 + 1);
    const h = lambda(sigmas[i + 1]) - lambda(sigmas[i]);
    const ratio = (sigmas[i + 1] * alphaNext) / sigmaT;
    const weight = -alphaNext * Math.expm1(-h);
    if (firstOrder) return { a, b, ratio, weight, secondOrder: 0 };
    const r0 = (lambda(sigmas[i]) - lambda(sigmas[i - 1])) / h;
    return { a, b, ratio, weight, secondOrder: 0.5 / r0 };
  });
  const previous = scratchBuffer();

  return {
    name: 'DPMSolverMultistepScheduler',
    timesteps,
    sigmas,
    initNoiseSigma: 1,
    predictionType,
    inputScale: () => 1,
    step(step, latents, modelOutput) {
      const { a, b, ratio, weight, secondOrder } = coefficients[step];
      const n = latents.length;
      const prev = previous(n);
      for (let i = 0; i < n; i++) {
        const x = latents[i];
        const x0 = a * x + b * modelOutput[i];
        const d = secondOrder === 0 ? x0 : x0 + secondOrder * (x0 - prev[i]);
        latents[i] = ratio * x + weight * d;
        prev[i] = x0;
      }
    },
  };
}
