// Expected values follow diffusers' DDIMScheduler (src/diffusers/schedulers/scheduling_ddim.py: set_timesteps,
// step with eta = 0), computed here independently of the module under test.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { alphasCumprod, type SchedulerConfig } from './common.ts';
import { ddimScheduler } from './ddim.ts';

const SD15: SchedulerConfig = {
  _class_name: 'DDIMScheduler',
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  steps_offset: 1,
  clip_sample: false,
  set_alpha_to_one: false,
};

test('leading spacing: 50 steps are 981, 961, …, 1; no input scaling, unit initial noise', () => {
  const schedule = ddimScheduler(SD15, 50);
  assert.deepEqual([...schedule.timesteps.slice(0, 2)], [981, 961]);
  assert.equal(schedule.timesteps[49], 1);
  assert.equal(schedule.initNoiseSigma, 1);
  assert.equal(schedule.inputScale(0), 1);
});

test('a step moves x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε to √ᾱ_prev·x₀ + √(1−ᾱ_prev)·ε', () => {
  const schedule = ddimScheduler(SD15, 10);
  const ac = alphasCumprod(SD15);
  const [x0, eps] = [0.4, -1.3];
  const t = schedule.timesteps[3];
  const prev = schedule.timesteps[4];
  assert.equal(t - prev, 100);
  const latents = Float32Array.of(Math.sqrt(ac[t]) * x0 + Math.sqrt(1 - ac[t]) * eps);
  schedule.step(3, latents, Float32Array.of(eps));
  const expected = Math.sqrt(ac[prev]) * x0 + Math.sqrt(1 - ac[prev]) * eps;
  assert.ok(Math.abs(latents[0] - expected) < 1e-6);
});

test('with set_alpha_to_one the last step returns x̂₀ exactly', () => {
  const config = { ...SD15, set_alpha_to_one: true };
  const schedule = ddimScheduler(config, 10);
  const ac = alphasCumprod(config);
  const t = schedule.timesteps[9];
  const latents = Float32Array.of(Math.sqrt(ac[t]) * 0.25 + Math.sqrt(1 - ac[t]) * 0.9);
  schedule.step(9, latents, Float32Array.of(0.9));
  assert.ok(Math.abs(latents[0] - 0.25) < 1e-6);
});

test('clip_sample clamps x̂₀ to the range', () => {
  const config = { ...SD15, set_alpha_to_one: true, clip_sample: true };
  const schedule = ddimScheduler(config, 10);
  const latents = Float32Array.of(5);
  schedule.step(9, latents, Float32Array.of(0));
  assert.equal(latents[0], 1);
});

test('v_prediction and sample: x̂₀ and ε̂ from the output, then √ᾱ_prev·x̂₀ + √(1−ᾱ_prev)·ε̂', () => {
  const ac = alphasCumprod(SD15);
  const schedule = ddimScheduler(SD15, 10);
  const [t, prev] = [schedule.timesteps[2], schedule.timesteps[3]];
  const [x, out] = [0.6, -0.9];
  const [sa, sb] = [Math.sqrt(ac[t]), Math.sqrt(1 - ac[t])];
  const cases = {
    v_prediction: { x0: sa * x - sb * out, eps: sa * out + sb * x },
    sample: { x0: out, eps: (x - sa * out) / sb },
  } as const;
  for (const [type, { x0, eps }] of Object.entries(cases)) {
    const latents = Float32Array.of(x);
    ddimScheduler({ ...SD15, prediction_type: type as keyof typeof cases }, 10).step(
      2,
      latents,
      Float32Array.of(out),
    );
    const expected = Math.sqrt(ac[prev]) * x0 + Math.sqrt(1 - ac[prev]) * eps;
    assert.ok(
      Math.abs(latents[0] - expected) < 1e-6 * Math.abs(expected),
      `${type}: ${latents[0]} vs ${expected}`,
    );
  }
  // With clip_sample only x̂₀ is clamped; ε̂ stays as predicted (sample: x̂₀ = 3 → 1).
  const latents = Float32Array.of(x);
  ddimScheduler({ ...SD15, prediction_type: 'sample', clip_sample: true }, 10).step(
    2,
    latents,
    Float32Array.of(3),
  );
  const expected = Math.sqrt(ac[prev]) * 1 + Math.sqrt(1 - ac[prev]) * ((x - sa * 3) / sb);
  assert.ok(Math.abs(latents[0] - expected) < 1e-6 * Math.abs(expected));
});
