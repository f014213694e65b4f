// Expected values follow diffusers' DDPMScheduler (src/diffusers/schedulers/scheduling_ddpm.py:
// __init__, set_timesteps with timestep_spacing "leading": T//N·arange(N) reversed + steps_offset,
// previous_timestep, _get_variance with "fixed_small": max((1 − ᾱ_prev)/(1 − ᾱ_t)·β_t, 1e-20),
// step) as the Kandinsky 2.2 decoder configures it, computed independently of the module under
// test: ᾱ in float64 here (Π(1 − β_s), β_s = 0.00085 + s/999·(0.012 − 0.00085)), and literal values
// worked with numpy from the same formulas on float32 tables (betas = float32(linspace),
// alphas_cumprod a float64 running product rounded to float32, as torch's CPU cumprod) and on the
// float32 inputs the Float32Arrays hold.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { batchNoise } from '../random.ts';
import { parseSchedulerConfig, type SchedulerConfig } from './common.ts';
import { ddpmScheduler } from './ddpm.ts';
import { closeWithin, fixedNoise } from './testing.ts';

const close = closeWithin(1e-6);

/** kandinsky-community/kandinsky-2-2-decoder/scheduler/scheduler_config.json (Hub commit e5c52c4). */
const DECODER_22: SchedulerConfig = parseSchedulerConfig({
  _class_name: 'DDPMScheduler',
  _diffusers_version: '0.17.0.dev0',
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

const noNoise = () => ({ noise: fixedNoise([]) });

function referenceAlphaBar(t: number): number {
  let product = 1;
  for (let s = 0; s <= t; s++) product *= 1 - (0.00085 + (s / 999) * (0.012 - 0.00085));
  return product;
}

test('leading spacing with steps_offset 1: 100 steps are 991, 981, …, 1; 30 steps 958, 925, …, 1', () => {
  const schedule = ddpmScheduler(DECODER_22, 100, noNoise());
  assert.deepEqual(
    [...schedule.timesteps],
    Array.from({ length: 100 }, (_, k) => 991 - 10 * k),
  );
  // T//N = 33: 29·33 + 1 = 958.
  const thirty = ddpmScheduler(DECODER_22, 30, noNoise()).timesteps;
  assert.deepEqual([thirty[0], thirty[1], thirty[29]], [958, 925, 1]);
  assert.equal(schedule.initNoiseSigma, 1);
  assert.equal(schedule.inputScale(0), 1);
  assert.equal(schedule.name, 'DDPMScheduler');
  assert.throws(() => ddpmScheduler(DECODER_22, 1001, noNoise()), RangeError);
});

test('alphas_cumprod: linear β (not scaled_linear) in float32', () => {
  const { alphasCumprod, betas } = ddpmScheduler(DECODER_22, 100, noNoise()).schedule;
  assert.equal(betas[0], Math.fround(0.00085));
  assert.equal(betas[999], Math.fround(0.012));
  for (const t of [0, 1, 11, 500, 981, 991, 999])
    close(alphasCumprod[t], referenceAlphaBar(t), 2e-6, `ᾱ_${t}`);
  // numpy: 0.99915, 0.16077161, 0.0017385172, 0.0015789628 (float32)
  assert.equal(alphasCumprod[0], Math.fround(0.99915));
  assert.equal(alphasCumprod[500], Math.fround(0.16077161));
  assert.equal(alphasCumprod[991], Math.fround(0.0017385172));
  assert.equal(alphasCumprod[999], Math.fround(0.0015789628));
});

test('step 991 → 981 worked by hand: x̂₀ unclipped (clip_sample false), μ = c₀·x̂₀ + c₁·x, plus σ·z', () => {
  const schedule = ddpmScheduler(DECODER_22, 100, { noise: fixedNoise([[0.1, -0.4, 1.3]]) });
  const k = schedule.coefficients[0];
  assert.deepEqual([k.t, k.prev, k.noisy], [991, 981, true]);
  // α = ᾱ_991/ᾱ_981, β = 1 − α; c₀ = √ᾱ_981·β/(1 − ᾱ_991), c₁ = √α·(1 − ᾱ_981)/(1 − ᾱ_991),
  // σ = √((1 − ᾱ_981)/(1 − ᾱ_991)·β).
  const [at, ap] = [referenceAlphaBar(991), referenceAlphaBar(981)];
  const beta = 1 - at / ap;
  close(k.c0, (Math.sqrt(ap) * beta) / (1 - at), 2e-6);
  close(k.c1, (Math.sqrt(at / ap) * (1 - ap)) / (1 - at), 2e-6);
  close(k.sigma, Math.sqrt(((1 - ap) / (1 - at)) * beta), 2e-6);
  // numpy: c₀ 0.0049864754, c₁ 0.9418797632, σ 0.3353296695
  close(k.c0, 0.0049864754);
  close(k.c1, 0.9418797632);
  close(k.sigma, 0.3353296695);
  const latents = Float32Array.of(0.3, -1.2, 4.0);
  schedule.step(0, latents, Float32Array.of(0.5, -0.9, 1.1));
  // x̂₀ = (x − √(1 − ᾱ_991)·ε)/√ᾱ_991 = −4.786, −7.214, 69.575: far outside ±1, and kept.
  close(latents[0], 0.2922303971);
  close(latents[1], -1.3003590105);
  close(latents[2], 4.5503804456);
});

test('step 11 → 1, and the last step 1 → −1: noise drawn (t > 0) at σ = 1e-10, the 1e-20 floor', () => {
  const z = [0.1, -0.4, 1.3];
  const noise = fixedNoise([z, z]);
  const schedule = ddpmScheduler(DECODER_22, 100, { noise });
  const latents = Float32Array.of(0.3, -1.2, 4.0);
  schedule.step(98, latents, Float32Array.of(0.5, -0.9, 1.1));
  close(schedule.coefficients[98].sigma, 0.0380011137);
  close(latents[0], 0.2609489234);
  close(latents[1], -1.1411211631);
  close(latents[2], 3.9705779612);

  const last = schedule.coefficients[99];
  // ᾱ_prev = 1: β = 1 − ᾱ_1, c₀ = 1, c₁ = 0, variance 0 → clamped to 1e-20.
  assert.deepEqual([last.t, last.prev, last.noisy], [1, -1, true]);
  close(last.c0, 1, 1e-12);
  assert.equal(last.c1, 0);
  assert.equal(last.sigma, 1e-10);
  latents.set([0.3, -1.2, 4.0]);
  schedule.step(99, latents, Float32Array.of(0.5, -0.9, 1.1));
  assert.equal(noise.calls, 2);
  // x̂₀ = (x − √(1 − ᾱ_1)·ε)/√ᾱ_1
  close(latents[0], 0.2795602631);
  close(latents[1], -1.1637736825);
  close(latents[2], 3.9578927137);
});

test('noise on every step with t > 0: 100 draws with steps_offset 1, 99 when the last t is 0', () => {
  const count = (config: SchedulerConfig) => {
    let calls = 0;
    const buffers = new Set<Float32Array>();
    const schedule = ddpmScheduler(config, 100, {
      noise: (out) => {
        calls++;
        buffers.add(out);
        out.fill(0.1);
      },
    });
    const latents = new Float32Array(4 * 8 * 8).fill(0.5);
    const eps = new Float32Array(latents.length).fill(0.2);
    for (let step = 0; step < 100; step++) schedule.step(step, latents, eps);
    assert.equal(buffers.size, 1, 'one scratch buffer for every step');
    return { calls, last: schedule.timesteps[99] };
  };
  assert.deepEqual(count(DECODER_22), { calls: 100, last: 1 });
  assert.deepEqual(count({ ...DECODER_22, steps_offset: 0 }), { calls: 99, last: 0 });
});

test('deterministic per seed, and image i of a batch equals a single run at seed + i', () => {
  const run = (seed: number, images: number) => {
    const perImage = 4 * 4 * 4;
    const noise = batchNoise(seed, images, perImage);
    const schedule = ddpmScheduler(DECODER_22, 20, { noise: (out) => noise.fill(out) });
    const latents = new Float32Array(images * perImage);
    noise.fill(latents);
    const eps = new Float32Array(latents.length);
    for (let step = 0; step < 20; step++) {
      // A stand-in UNet: ε = 0.9·x.
      for (let i = 0; i < latents.length; i++) eps[i] = 0.9 * latents[i];
      schedule.step(step, latents, eps);
    }
    return latents;
  };
  assert.deepEqual(run(7, 1), run(7, 1));
  assert.notDeepEqual(run(7, 1), run(8, 1));
  const batch = run(7, 2);
  assert.deepEqual(batch.subarray(0, 64), run(7, 1));
  assert.deepEqual(batch.subarray(64), run(8, 1));
});

test('DDPMScheduler defaults: clip_sample true clamps x̂₀ to ±1 (range from the config)', () => {
  const { clip_sample: _, ...unclipped } = DECODER_22;
  const schedule = ddpmScheduler(unclipped, 100, { noise: fixedNoise([[0, 0, 0]]) });
  const k = schedule.coefficients[0];
  const latents = Float32Array.of(0.3, -1.2, 4.0);
  schedule.step(0, latents, Float32Array.of(0.5, -0.9, 1.1));
  // x̂₀ = −4.786, −7.214, 69.575 → −1, −1, 1
  close(latents[0], -k.c0 + k.c1 * Math.fround(0.3));
  close(latents[1], -k.c0 + k.c1 * Math.fround(-1.2));
  close(latents[2], k.c0 + k.c1 * 4);
  const wide = ddpmScheduler({ ...unclipped, clip_sample_range: 5 }, 100, { noise: fixedNoise([[0, 0, 0]]) });
  latents.set([0.3, -1.2, 4.0]);
  wide.step(0, latents, Float32Array.of(0.5, -0.9, 1.1));
  // −4.786 is inside ±5 and stays; −7.214 → −5.
  close(latents[1], -5 * k.c0 + k.c1 * Math.fround(-1.2));
});

test('v_prediction and sample: x̂₀ = √ᾱ_t·x − √(1−ᾱ_t)·v, resp. the output', () => {
  const [x, out] = [0.6, -0.9];
  for (const type of ['v_prediction', 'sample'] as const) {
    const schedule = ddpmScheduler({ ...DECODER_22, prediction_type: type }, 10, {
      noise: fixedNoise([[0]]),
    });
    const k = schedule.coefficients[4];
    const at = schedule.schedule.alphasCumprod[k.t];
    const x0 =
      type === 'sample' ? out : Math.sqrt(at) * Math.fround(x) - Math.sqrt(1 - at) * Math.fround(out);
    const latents = Float32Array.of(x);
    schedule.step(4, latents, Float32Array.of(out));
    close(latents[0], k.c0 * x0 + k.c1 * Math.fround(x), 1e-6, type);
  }
});

test('variance types: fixed_small_log is the same σ; the learned ones are refused', () => {
  const small = ddpmScheduler(DECODER_22, 50, noNoise());
  const log = ddpmScheduler({ ...DECODER_22, variance_type: 'fixed_small_log' }, 50, noNoise());
  assert.deepEqual(
    small.coefficients.map((k) => k.sigma),
    log.coefficients.map((k) => k.sigma),
  );
  for (const variance_type of ['learned_range', 'learned', 'fixed_large'])
    assert.throws(() => ddpmScheduler({ ...DECODER_22, variance_type }, 50, noNoise()), /variance_type/);
  assert.throws(() => ddpmScheduler(DECODER_22, 50), /noise source/);
  assert.throws(() => parseSchedulerConfig({ ...DECODER_22, thresholding: true }), /thresholding/);
});
