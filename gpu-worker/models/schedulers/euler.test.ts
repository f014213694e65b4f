// Expected values follow diffusers' EulerDiscreteScheduler
// (src/diffusers/schedulers/scheduling_euler_discrete.py: __init__, set_timesteps, step,
// init_noise_sigma) and are computed here independently of the module under test.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSchedulerConfig, type SchedulerConfig } from './common.ts';
import { eulerScheduler, eulerStep, eulerTimesteps } from './euler.ts';
import { closeWithin, referenceSigma } from './testing.ts';

const close = closeWithin(1e-9);

const SD15: SchedulerConfig = {
  _class_name: 'EulerDiscreteScheduler',
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  prediction_type: 'epsilon',
  timestep_spacing: 'leading',
  steps_offset: 1,
};

test('leading spacing with steps_offset 1: 25 steps are 961, 921, …, 1', () => {
  const { timesteps } = eulerScheduler(SD15, 25);
  assert.equal(timesteps.length, 25);
  assert.deepEqual([...timesteps.slice(0, 3)], [961, 921, 881]);
  assert.deepEqual([...timesteps.slice(-2)], [41, 1]);
  // 1000 // 30 = 33: [29·33 + 1, …, 1]
  assert.deepEqual([...eulerTimesteps(SD15, 30).slice(0, 2)], [958, 925]);
});

test('sigmas match the SD 1.x training schedule (k-diffusion publishes σ_max 14.6146, σ_min 0.0292)', () => {
  close(referenceSigma(999), 14.6146, 1e-4);
  close(referenceSigma(0), 0.029168, 1e-4);
  const { sigmas } = eulerScheduler(SD15, 25);
  assert.equal(sigmas.length, 26);
  close(sigmas[0], referenceSigma(961));
  close(sigmas[12], referenceSigma(481));
  close(sigmas[24], referenceSigma(1));
  assert.equal(sigmas[25], 0);
  for (let i = 1; i < sigmas.length; i++) assert.ok(sigmas[i] < sigmas[i - 1]);
});

test('init_noise_sigma is sqrt(σ_max² + 1) for leading spacing and σ_max for linspace/trailing', () => {
  close(eulerScheduler(SD15, 25).initNoiseSigma, Math.sqrt(referenceSigma(961) ** 2 + 1));
  const linspace = eulerScheduler({ ...SD15, timestep_spacing: 'linspace' }, 25);
  assert.equal(linspace.timesteps[0], 999);
  close(linspace.initNoiseSigma, referenceSigma(999));
  const trailing = eulerScheduler({ ...SD15, timestep_spacing: 'trailing' }, 25);
  close(trailing.initNoiseSigma, referenceSigma(999));
});

test('linspace spacing interpolates σ at fractional timesteps (np.interp)', () => {
  const { timesteps, sigmas } = eulerScheduler({ ...SD15, timestep_spacing: 'linspace' }, 4);
  // np.linspace(0, 999, 4)[::-1] = [999, 666, 333, 0]
  assert.deepEqual([...timesteps], [999, 666, 333, 0]);
  const five = eulerScheduler({ ...SD15, timestep_spacing: 'linspace' }, 5);
  // 999·3/4 = 749.25 → σ = σ(749) + 0.25·(σ(750) − σ(749))
  assert.equal(five.timesteps[1], 749.25);
  close(five.sigmas[1], referenceSigma(749) + 0.25 * (referenceSigma(750) - referenceSigma(749)), 1e-9);
  close(sigmas[3], referenceSigma(0));
});

test('trailing spacing rounds half to even like numpy: 16 steps start 999, 937, 874, 811, 749, 687', () => {
  // np.arange(1000, 0, -62.5) = [1000, 937.5, 875, 812.5, 750, 687.5, …]; np.round → 938, 812, 688.
  const timesteps = eulerTimesteps({ ...SD15, timestep_spacing: 'trailing' }, 16);
  assert.deepEqual([...timesteps.slice(0, 6)], [999, 937, 874, 811, 749, 687]);
  assert.equal(timesteps[15], 61);
});

test('scale_model_input divides by sqrt(σ² + 1)', () => {
  const schedule = eulerScheduler(SD15, 25);
  close(schedule.inputScale(0), 1 / Math.sqrt(referenceSigma(961) ** 2 + 1));
  close(schedule.inputScale(24), 1 / Math.sqrt(referenceSigma(1) ** 2 + 1));
});

test('one epsilon step is x + (σ_next − σ)·ε', () => {
  const latents = Float32Array.of(1, -2);
  eulerStep(latents, Float32Array.of(0.5, 0.25), 2, 1.5, 'epsilon');
  assert.deepEqual([...latents], [0.75, -2.125]);
});

test('a step to σ = 0 lands on the predicted x̂₀ for every prediction type', () => {
  const sigma = 1.5;
  const x = 0.8;
  const out = -0.3;
  const expectations = {
    epsilon: x - sigma * out,
    v_prediction: out * (-sigma / Math.sqrt(sigma ** 2 + 1)) + x / (sigma ** 2 + 1),
    sample: out,
  } as const;
  for (const [type, x0] of Object.entries(expectations)) {
    const latents = Float32Array.of(x);
    eulerStep(latents, Float32Array.of(out), sigma, 0, type as keyof typeof expectations);
    close(latents[0], x0, 1e-6, `${type}: ${latents[0]} vs ${x0}`);
  }
});

test('driven by an ideal denoiser, the full loop recovers the clean sample', () => {
  const schedule = eulerScheduler(SD15, 20);
  const clean = Float32Array.of(0.5, -1, 2);
  const noise = Float32Array.of(1.2, -0.3, 0.7);
  const latents = clean.map((c, i) => c + schedule.initNoiseSigma * noise[i]);
  const eps = new Float32Array(3);
  for (let step = 0; step < 20; step++) {
    const sigma = schedule.sigmas[step];
    for (let i = 0; i < 3; i++) eps[i] = (latents[i] - clean[i]) / sigma;
    schedule.step(step, latents, eps);
  }
  for (let i = 0; i < 3; i++) close(latents[i], clean[i], 1e-5);
});

test('Karras sigmas follow the ρ = 7 ramp between the schedule ends', () => {
  const plain = eulerScheduler(SD15, 10);
  const karras = eulerScheduler({ ...SD15, use_karras_sigmas: true }, 10);
  close(karras.sigmas[0], plain.sigmas[0], 1e-9);
  close(karras.sigmas[9], plain.sigmas[9], 1e-9);
  const mid =
    (plain.sigmas[0] ** (1 / 7) + (4 / 9) * (plain.sigmas[9] ** (1 / 7) - plain.sigmas[0] ** (1 / 7))) ** 7;
  close(karras.sigmas[4], mid, 1e-9);
  // Timesteps are mapped back from σ, so the ends match the leading schedule's.
  close(karras.timesteps[0], 901, 1e-6);
  close(karras.timesteps[9], 1, 1e-6);
});

test('config parsing applies types and rejects what Easel cannot run', () => {
  assert.equal(parseSchedulerConfig({ ...SD15, extra: 'kept' }).beta_schedule, 'scaled_linear');
  assert.throws(() => parseSchedulerConfig({ beta_schedule: 'exotic' }), /beta_schedule/);
  assert.throws(() => parseSchedulerConfig({ prediction_type: 'flow' }), /prediction_type/);
  assert.throws(() => eulerScheduler(SD15, 0), RangeError);
});
