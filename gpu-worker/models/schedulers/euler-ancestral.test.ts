// Expected values follow diffusers' EulerAncestralDiscreteScheduler
// (src/diffusers/schedulers/scheduling_euler_ancestral_discrete.py: set_timesteps, step:
// σ_up = (σ_to²·(σ_from² − σ_to²)/σ_from²)^½, σ_down = (σ_to² − σ_up²)^½,
// prev = x + (x − x̂₀)/σ·(σ_down − σ) + z·σ_up) and k-diffusion's get_ancestral_step, and are
// computed here independently of the module under test (σ from ᾱ summed in log space; σ_down in
// its closed form σ_to²/σ_from).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SchedulerConfig } from './common.ts';
import { eulerScheduler } from './euler.ts';
import { ancestralSigmas, eulerAncestralScheduler } from './euler-ancestral.ts';
import { closeWithin, fixedNoise, referenceSigma } from './testing.ts';

const close = closeWithin(1e-6);

const SD15: SchedulerConfig = {
  _class_name: 'EulerAncestralDiscreteScheduler',
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 1,
};

test('timesteps, σ and init_noise_sigma are Euler’s; the last σ is 0', () => {
  const schedule = eulerAncestralScheduler(SD15, 4, { noise: fixedNoise([]) });
  assert.deepEqual([...schedule.timesteps], [751, 501, 251, 1]);
  assert.equal(schedule.sigmas.length, 5);
  for (const [i, t] of [751, 501, 251, 1].entries()) close(schedule.sigmas[i], referenceSigma(t), 1e-9);
  assert.equal(schedule.sigmas[4], 0);
  close(schedule.initNoiseSigma, Math.sqrt(referenceSigma(751) ** 2 + 1), 1e-9);
  close(schedule.inputScale(1), 1 / Math.sqrt(referenceSigma(501) ** 2 + 1), 1e-9);
  assert.equal(schedule.name, 'EulerAncestralDiscreteScheduler');
});

test('step 0 worked by hand: σ 4.116696 → 1.623692, σ_down 0.640411, σ_up 1.492062', () => {
  const schedule = eulerAncestralScheduler(SD15, 4, { noise: fixedNoise([[0.5, -1.1]]) });
  close(schedule.sigmas[0], 4.116696, 1e-6);
  close(schedule.sigmas[1], 1.623692, 1e-6);
  const latents = Float32Array.of(9, -4);
  schedule.step(0, latents, Float32Array.of(0.3, -0.2));
  // 9 + (0.640411 − 4.116696)·0.3 + 1.492062·0.5 and −4 + (0.640411 − 4.116696)·(−0.2) − 1.492062·1.1
  close(latents[0], 8.703145, 1e-6);
  close(latents[1], -4.946011, 1e-6);
});

test('σ_up and σ_down split σ_next: σ_down = σ_next²/σ and σ_down² + σ_up² = σ_next²', () => {
  // σ = 2 → σ_next = 1: σ_up = √(1·3/4) = √3/2, σ_down = 1/2.
  const { up, down } = ancestralSigmas(2, 1);
  close(up, Math.sqrt(3) / 2, 1e-12);
  close(down, 0.5, 1e-12);
  for (const [sigma, next] of [
    [14.6, 9.1],
    [0.9, 0.2],
  ]) {
    const split = ancestralSigmas(sigma, next);
    close(split.down, next ** 2 / sigma, 1e-12);
    close(split.down ** 2 + split.up ** 2, next ** 2, 1e-12);
  }
  assert.deepEqual(ancestralSigmas(0.5, 0), { up: 0, down: 0 });
});

test('a worked 4-step run: x ← x + (σ_down − σ)·ε + σ_up·z with fresh noise on the first 3 steps', () => {
  const eps = [0.3, -0.2];
  const z = [
    [0.5, -1.1],
    [-0.8, 0.35],
    [1.4, 0.6],
  ];
  const noise = fixedNoise(z);
  const schedule = eulerAncestralScheduler(SD15, 4, { noise });
  const latents = Float32Array.of(9, -4);
  for (let step = 0; step < 4; step++) schedule.step(step, latents, Float32Array.from(eps));
  assert.equal(noise.calls, 3, 'no noise is drawn for the step to σ = 0');

  const sigmas = [751, 501, 251, 1].map(referenceSigma).concat(0);
  const expected = [9, -4];
  for (let i = 0; i < 4; i++) {
    const [sigma, next] = [sigmas[i], sigmas[i + 1]];
    const down = next ** 2 / sigma;
    const up = next * Math.sqrt(1 - next ** 2 / sigma ** 2);
    for (let k = 0; k < 2; k++) expected[k] += (down - sigma) * eps[k] + up * (z[i]?.[k] ?? 0);
  }
  close(latents[0], expected[0]);
  close(latents[1], expected[1]);
});

test('v_prediction and sample: the step uses x̂₀ = v·(−σ/√(σ²+1)) + x/(σ²+1), resp. the output', () => {
  const sigma = referenceSigma(501);
  const next = referenceSigma(1);
  const x = 1.7;
  const out = -0.45;
  const z = 0.8;
  const down = next ** 2 / sigma;
  const up = next * Math.sqrt(1 - next ** 2 / sigma ** 2);
  const x0s = {
    v_prediction: out * (-sigma / Math.sqrt(sigma ** 2 + 1)) + x / (sigma ** 2 + 1),
    sample: out,
  } as const;
  for (const [type, x0] of Object.entries(x0s)) {
    const config = { ...SD15, prediction_type: type as keyof typeof x0s };
    const schedule = eulerAncestralScheduler(config, 2, { noise: fixedNoise([[z]]) });
    // Step 0 of a 2-step leading schedule goes from t = 501 to t = 1.
    assert.deepEqual([...schedule.timesteps], [501, 1]);
    const latents = Float32Array.of(x);
    schedule.step(0, latents, Float32Array.of(out));
    close(latents[0], x + ((x - x0) / sigma) * (down - sigma) + up * z, 1e-6, type);
  }
});

test('Karras σ: the ρ = 7 ramp between Euler’s first and last σ, the same as Euler with Karras', () => {
  const config = { ...SD15, use_karras_sigmas: true };
  const ancestral = eulerAncestralScheduler(config, 10, { noise: fixedNoise([]) });
  const euler = eulerScheduler(config, 10);
  // Endpoints: leading 10 steps are 901 … 1.
  close(ancestral.sigmas[0], referenceSigma(901), 1e-9);
  close(ancestral.sigmas[9], referenceSigma(1), 1e-9);
  const inv = (s: number) => s ** (1 / 7);
  const mid = (inv(referenceSigma(901)) + (5 / 9) * (inv(referenceSigma(1)) - inv(referenceSigma(901)))) ** 7;
  close(ancestral.sigmas[5], mid, 1e-9);
  assert.deepEqual([...ancestral.sigmas], [...euler.sigmas]);
  assert.deepEqual([...ancestral.timesteps], [...euler.timesteps]);
  // final_sigmas_type is Euler's option only: Euler a always ends at 0.
  const sigmaMin = eulerAncestralScheduler({ ...config, final_sigmas_type: 'sigma_min' }, 10, {
    noise: fixedNoise([]),
  });
  assert.equal(sigmaMin.sigmas[10], 0);
});

test('it is stochastic: without a noise source it refuses to build', () => {
  assert.throws(() => eulerAncestralScheduler(SD15, 4), /noise source/);
});
