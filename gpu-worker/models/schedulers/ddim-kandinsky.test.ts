// The Kandinsky 2.1 decoder runs the existing DDIMScheduler (ddim.ts) from its own config: these
// tests show that config gives diffusers' values (src/diffusers/schedulers/scheduling_ddim.py:
// __init__ with beta_schedule "linear" = torch.linspace(0.00085, 0.012, 1000); set_timesteps with
// timestep_spacing "leading": T//N·arange(N) reversed + steps_offset; step with eta 0,
// prev = t − T//N, ᾱ_prev = ᾱ[0] for prev < 0 when set_alpha_to_one is false, no clipping).
// ᾱ is worked here in float64 independently of the module under test; literal values were worked
// with numpy from the same formulas on the float32 inputs the Float32Arrays hold. ddim.ts keeps ᾱ
// in float64 where diffusers has float32: they agree to ~1e-7 relative on this schedule.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { alphasCumprod, parseSchedulerConfig, type SchedulerConfig } from './common.ts';
import { ddimScheduler } from './ddim.ts';
import { closeWithin } from './testing.ts';

const close = closeWithin(1e-6);

/** kandinsky-community/kandinsky-2-1/scheduler/scheduler_config.json (docs/notes/kandinsky.md §4). */
const DECODER_21: SchedulerConfig = parseSchedulerConfig({
  _class_name: 'DDIMScheduler',
  num_train_timesteps: 1000,
  beta_schedule: 'linear',
  beta_start: 0.00085,
  beta_end: 0.012,
  clip_sample: false,
  set_alpha_to_one: false,
  steps_offset: 1,
  prediction_type: 'epsilon',
  thresholding: false,
});

/** ᾱ_t = Π_{s≤t}(1 − β_s), β_s = 0.00085 + s/999·(0.012 − 0.00085), summed in log space. */
function referenceAlphaBar(t: number): number {
  let log = 0;
  for (let s = 0; s <= t; s++) log += Math.log1p(-(0.00085 + (s / 999) * (0.012 - 0.00085)));
  return Math.exp(log);
}

test('leading spacing with steps_offset 1: 100 steps are 991, 981, …, 11, 1', () => {
  const schedule = ddimScheduler(DECODER_21, 100);
  assert.deepEqual(
    [...schedule.timesteps],
    Array.from({ length: 100 }, (_, k) => 991 - 10 * k),
  );
  assert.equal(schedule.initNoiseSigma, 1);
  assert.equal(schedule.inputScale(50), 1);
  assert.equal(schedule.predictionType, 'epsilon');
});

test('ᾱ from linear β (not scaled_linear), as diffusers’ float32 table to ~1e-7', () => {
  const ac = alphasCumprod(DECODER_21);
  for (const t of [0, 1, 11, 500, 981, 991, 999]) close(ac[t], referenceAlphaBar(t), 1e-12, `ᾱ_${t}`);
  // numpy, float32 table: 0.99915, 0.16077161, 0.0019588282, 0.0017385172, 0.0015789628
  for (const [t, value] of [
    [0, 0.99915],
    [500, 0.16077161],
    [981, 0.0019588282],
    [991, 0.0017385172],
    [999, 0.0015789628],
  ])
    close(ac[t], value, 3e-7, `ᾱ_${t}`);
  // SD's scaled_linear table on the same endpoints is far from it (ᾱ_500 ≈ 0.2763).
  const scaled = alphasCumprod({ ...DECODER_21, beta_schedule: 'scaled_linear' });
  assert.ok(Math.abs(scaled[500] - ac[500]) > 0.1);
});

test('step 991 → 981 worked by hand: x̂₀ is not clipped (clip_sample false)', () => {
  const schedule = ddimScheduler(DECODER_21, 100);
  const latents = Float32Array.of(0.3, -1.2, 4.0);
  const eps = Float32Array.of(0.5, -0.9, 1.1);
  schedule.step(0, latents, eps);
  // x̂₀ = (x − √(1 − ᾱ_991)·ε)/√ᾱ_991 = −4.786, −7.214, 69.575; x ← √ᾱ_981·x̂₀ + √(1 − ᾱ_981)·ε
  const [at, ap] = [referenceAlphaBar(991), referenceAlphaBar(981)];
  for (let i = 0; i < 3; i++) {
    const x0 = (Math.fround([0.3, -1.2, 4.0][i]) - Math.sqrt(1 - at) * eps[i]) / Math.sqrt(at);
    close(latents[i], Math.sqrt(ap) * x0 + Math.sqrt(1 - ap) * eps[i]);
  }
  // numpy
  close(latents[0], 0.2876771518);
  close(latents[1], -1.2183906253);
  close(latents[2], 4.1782072109);
});

test('the last step (t = 1, prev = −9) lands on ᾱ[0], not 1 (set_alpha_to_one false)', () => {
  const schedule = ddimScheduler(DECODER_21, 100);
  const latents = Float32Array.of(0.3, -1.2, 4.0);
  const eps = Float32Array.of(0.5, -0.9, 1.1);
  schedule.step(99, latents, eps);
  const [at, final] = [referenceAlphaBar(1), referenceAlphaBar(0)];
  close(final, 1 - 0.00085, 1e-15);
  for (let i = 0; i < 3; i++) {
    const x0 = (Math.fround([0.3, -1.2, 4.0][i]) - Math.sqrt(1 - at) * eps[i]) / Math.sqrt(at);
    close(latents[i], Math.sqrt(final) * x0 + Math.sqrt(1 - final) * eps[i]);
  }
  // numpy
  close(latents[0], 0.2940190721);
  close(latents[1], -1.1895187232);
  close(latents[2], 3.9882810008);
});

test('eta 0: deterministic without a noise source, the same output on every run', () => {
  const run = () => {
    const schedule = ddimScheduler(DECODER_21, 100);
    const latents = Float32Array.of(1.5, -0.25, 0.75);
    const eps = new Float32Array(3);
    for (let step = 0; step < 100; step++) {
      for (let i = 0; i < 3; i++) eps[i] = 0.9 * latents[i];
      schedule.step(step, latents, eps);
    }
    return latents;
  };
  assert.deepEqual(run(), run());
});
