// Expected values follow DPM-Solver++(2M) as published (Lu et al. 2022, arXiv:2211.01095,
// Algorithm 2, in the VP parametrisation α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t), λ_t = log(α_t/σ_t)) and
// diffusers' DPMSolverMultistepScheduler (src/diffusers/schedulers/scheduling_dpmsolver_multistep.py:
// set_timesteps, _convert_to_karras, convert_model_output, dpm_solver_first_order_update,
// multistep_dpm_solver_second_order_update with solver_type "midpoint", step's
// lower_order_final rule). They are computed here independently of the module under test, which
// works from the EDM σ = √((1 − ᾱ)/ᾱ) instead.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SchedulerConfig } from './common.ts';
import { dpmpp2mScheduler, dpmSolverTimesteps } from './dpmpp-2m.ts';
import { closeWithin, referenceSigma, SD15_ALPHA_BARS } from './testing.ts';

const close = closeWithin(1e-6);

const SD15: SchedulerConfig = {
  _class_name: 'DPMSolverMultistepScheduler',
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  prediction_type: 'epsilon',
};

const alphaBars = SD15_ALPHA_BARS;
const edmSigma = referenceSigma;

interface Point {
  alpha: number;
  sigma: number;
  lambda: number;
}

const vp = (alphaBar: number): Point => ({
  alpha: Math.sqrt(alphaBar),
  sigma: Math.sqrt(1 - alphaBar),
  lambda: Math.log(Math.sqrt(alphaBar) / Math.sqrt(1 - alphaBar)),
});
const CLEAN: Point = { alpha: 1, sigma: 0, lambda: Number.POSITIVE_INFINITY };

/**
 * DPM-Solver++(2M), Algorithm 2: the first step (and the last when `firstOrderLast`) is
 * first order; the others use D = (1 + 1/(2r))·x̂₀_i − 1/(2r)·x̂₀_{i−1}, r = h_{i−1}/h_i.
 */
function reference(
  points: Point[],
  start: number[],
  eps: (step: number) => number[],
  firstOrderLast: boolean,
): number[] {
  let x = [...start];
  let previous: number[] = [];
  const steps = points.length - 1;
  for (let i = 0; i < steps; i++) {
    const [cur, next] = [points[i], points[i + 1]];
    const e = eps(i);
    const x0 = x.map((v, k) => (v - cur.sigma * e[k]) / cur.alpha);
    if (next.sigma === 0) {
      x = x0; // the first-order update's limit as λ_next → ∞
    } else {
      const h = next.lambda - cur.lambda;
      const firstOrder = i === 0 || (firstOrderLast && i === steps - 1);
      const r = firstOrder ? 0 : (cur.lambda - points[i - 1].lambda) / h;
      const d = firstOrder ? x0 : x0.map((v, k) => (1 + 1 / (2 * r)) * v - (1 / (2 * r)) * previous[k]);
      x = x.map((v, k) => (next.sigma / cur.sigma) * v - next.alpha * (Math.exp(-h) - 1) * d[k]);
    }
    previous = x0;
  }
  return x;
}

function run(config: SchedulerConfig, steps: number, start: number[], eps: (step: number) => number[]) {
  const schedule = dpmpp2mScheduler(config, steps);
  const latents = Float32Array.from(start);
  for (let step = 0; step < steps; step++) schedule.step(step, latents, Float32Array.from(eps(step)));
  return { schedule, latents };
}

const varyingEps = (step: number) => [0.3 + 0.1 * step, -0.2 + 0.07 * step];

test('linspace spacing (the default): np.linspace(0, 999, steps + 1).round()[::-1][:-1], halves to even', () => {
  // linspace(0, 999, 5) = 0, 249.75, 499.5, 749.25, 999; 499.5 rounds to 500.
  assert.deepEqual([...dpmSolverTimesteps(SD15, 4)], [999, 749, 500, 250]);
  const t25 = dpmSolverTimesteps(SD15, 25);
  assert.deepEqual([...t25.slice(0, 4)], [999, 959, 919, 879]);
  assert.deepEqual([...t25.slice(-3)], [120, 80, 40]);
  const schedule = dpmpp2mScheduler(SD15, 4);
  for (const [i, t] of [999, 749, 500, 250].entries()) close(schedule.sigmas[i], edmSigma(t), 1e-9);
  assert.equal(schedule.sigmas[4], 0);
  assert.equal(schedule.initNoiseSigma, 1);
  assert.equal(schedule.inputScale(0), 1);
});

test('leading spacing uses last // (steps + 1) plus steps_offset; trailing counts down from 999', () => {
  // 1000 // 26 = 38: 25·38 + 1, …, 1·38 + 1
  const leading = dpmSolverTimesteps({ ...SD15, timestep_spacing: 'leading', steps_offset: 1 }, 25);
  assert.deepEqual([...leading.slice(0, 4)], [951, 913, 875, 837]);
  assert.deepEqual([...leading.slice(-2)], [77, 39]);
  const trailing = dpmSolverTimesteps({ ...SD15, timestep_spacing: 'trailing' }, 25);
  assert.deepEqual([...trailing.slice(0, 4)], [999, 959, 919, 879]);
  assert.deepEqual([...trailing.slice(-2)], [79, 39]);
});

test('lambda_min_clipped drops the timesteps whose λ = −log σ is below it', () => {
  // λ < −2 ⇔ σ > e²: those timesteps are cut from the top of the schedule.
  const clipped = alphaBars.filter((_, t) => -Math.log(edmSigma(t)) < -2).length;
  assert.ok(clipped > 0 && clipped < 500);
  const timesteps = dpmSolverTimesteps({ ...SD15, lambda_min_clipped: -2 }, 4);
  assert.equal(timesteps[0], 1000 - clipped - 1);
  assert.deepEqual(
    [...dpmSolverTimesteps({ ...SD15, lambda_min_clipped: Number.NEGATIVE_INFINITY }, 4)],
    [999, 749, 500, 250],
  );
});

test('Karras σ span the whole training range: σ(999) = 14.6146 down to σ(0) = 0.0292, ρ = 7', () => {
  const schedule = dpmpp2mScheduler({ ...SD15, use_karras_sigmas: true }, 10);
  close(schedule.sigmas[0], edmSigma(999), 1e-9);
  close(schedule.sigmas[9], edmSigma(0), 1e-9);
  close(schedule.sigmas[0], 14.6146, 1e-5);
  close(schedule.sigmas[9], 0.0291672, 1e-5);
  assert.equal(schedule.sigmas[10], 0);
  const inv = (s: number) => s ** (1 / 7);
  const third = (inv(edmSigma(999)) + (3 / 9) * (inv(edmSigma(0)) - inv(edmSigma(999)))) ** 7;
  close(schedule.sigmas[3], third, 1e-9);
  // Timesteps are mapped back from σ and rounded to integers.
  assert.equal(schedule.timesteps[0], 999);
  assert.equal(schedule.timesteps[9], 0);
  for (const t of schedule.timesteps) assert.ok(Number.isInteger(t));
  // σ(687) ≤ σ_3 ≤ σ(688): the rounded timestep is the nearest in log σ.
  assert.ok(edmSigma(686) < third && third < edmSigma(688));
  assert.equal(schedule.timesteps[3], 687);
});

test('a worked 4-step run: first order, two midpoint second-order steps, a first-order last step onto x̂₀', () => {
  const start = [1.1, -0.6];
  const { latents } = run(SD15, 4, start, varyingEps);
  const points = [...[999, 749, 500, 250].map((t) => vp(alphaBars[t])), CLEAN];
  const expected = reference(points, start, varyingEps, true);
  close(latents[0], expected[0]);
  close(latents[1], expected[1]);
  // The second-order term matters: a first-order-only solver lands elsewhere.
  const firstOrderOnly = (() => {
    let x = [...start];
    for (let i = 0; i < 4; i++) x = reference([points[i], points[i + 1]], x, () => varyingEps(i), true);
    return x;
  })();
  assert.ok(Math.abs(firstOrderOnly[0] - expected[0]) > 1e-3);
});

test('step 0 worked by hand (t 999 → 749, ε = 0.3, x = 1.1)', () => {
  // ᾱ_999 = 0.00466010, ᾱ_749 = 0.0566235: α_999 = 0.0682649, σ_999 = 0.997667,
  // α_749 = 0.237957, σ_749 = 0.971276; λ = log(α/σ): −2.682024 → −1.406521, h = 1.275503.
  close(alphaBars[999], 0.0046601, 1e-5);
  close(alphaBars[749], 0.0566235, 1e-5);
  const schedule = dpmpp2mScheduler(SD15, 4);
  const x = Float32Array.of(1.1);
  schedule.step(0, x, Float32Array.of(0.3));
  // x̂₀ = (1.1 − 0.997667·0.3)/0.0682649 = 11.729303;
  // x = (0.971276/0.997667)·1.1 − 0.237957·(e^−1.275503 − 1)·11.729303 = 1.070901 + 2.011550
  close(x[0], 3.082451, 1e-6);
});

test('final_sigmas_type sigma_min without lower_order_final: the last step is second order onto σ(0)', () => {
  const config: SchedulerConfig = { ...SD15, final_sigmas_type: 'sigma_min', lower_order_final: false };
  const start = [0.4, 2.2];
  const { schedule, latents } = run(config, 3, start, varyingEps);
  close(schedule.sigmas[3], edmSigma(0), 1e-9);
  const points = [...[...schedule.timesteps].map((t) => vp(alphaBars[t])), vp(alphaBars[0])];
  const expected = reference(points, start, varyingEps, false);
  close(latents[0], expected[0]);
  close(latents[1], expected[1]);
  // lower_order_final (the default) makes the last of fewer than 15 steps first order.
  const lower = run({ ...config, lower_order_final: true }, 3, start, varyingEps).latents;
  const expectedLower = reference(points, start, varyingEps, true);
  close(lower[0], expectedLower[0]);
  assert.ok(Math.abs(lower[0] - latents[0]) > 1e-4);
});

test('v_prediction: x̂₀ = α·x − σ·v; sample: x̂₀ = output', () => {
  const [cur, next] = [vp(alphaBars[999]), vp(alphaBars[749])];
  const h = next.lambda - cur.lambda;
  const x = 0.7;
  const out = -0.4;
  const cases = { v_prediction: cur.alpha * x - cur.sigma * out, sample: out } as const;
  for (const [type, x0] of Object.entries(cases)) {
    const schedule = dpmpp2mScheduler({ ...SD15, prediction_type: type as keyof typeof cases }, 4);
    const latents = Float32Array.of(x);
    schedule.step(0, latents, Float32Array.of(out));
    close(latents[0], (next.sigma / cur.sigma) * x - next.alpha * (Math.exp(-h) - 1) * x0, 1e-6, type);
  }
});

test('driven by an ideal denoiser, 20 Karras steps recover the clean sample', () => {
  const schedule = dpmpp2mScheduler({ ...SD15, use_karras_sigmas: true }, 20);
  const clean = [0.5, -1, 2];
  const noise = [1.2, -0.3, 0.7];
  // x = α·(x₀ + σ·n) with the EDM σ; ε = n exactly, so every x̂₀ is the clean sample.
  const alpha0 = 1 / Math.sqrt(schedule.sigmas[0] ** 2 + 1);
  const latents = Float32Array.from(clean, (c, i) => alpha0 * (c + schedule.sigmas[0] * noise[i]));
  for (let step = 0; step < 20; step++) schedule.step(step, latents, Float32Array.from(noise));
  for (let i = 0; i < 3; i++) close(latents[i], clean[i], 1e-5);
});
