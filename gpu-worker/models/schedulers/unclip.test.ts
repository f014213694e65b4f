// Expected values follow diffusers' UnCLIPScheduler (src/diffusers/schedulers/scheduling_unclip.py:
// betas_for_alpha_bar, __init__, set_timesteps, step, _get_variance) as the Kandinsky 2.1/2.2 prior
// configures it (kandinsky-2-{1,2}-prior/scheduler/scheduler_config.json), computed independently of
// the module under test: the cosine ᾱ(t) = cos²((t + 0.008)/1.008·π/2) in float64 here, and literal
// values worked with numpy from the same formulas (betas rounded to float32, alphas_cumprod as
// torch's CPU cumprod forms it: a float64 running product rounded to float32 per entry).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { batchNoise } from '../random.ts';
import { parseSchedulerConfig, roundHalfEven, type SchedulerConfig } from './common.ts';
import { closeWithin, fixedNoise } from './testing.ts';
import { unclipScheduler, unclipTimesteps } from './unclip.ts';

const close = closeWithin(1e-6);

/** kandinsky-community/kandinsky-2-2-prior/scheduler/scheduler_config.json (2.1's is the same). */
const PRIOR: SchedulerConfig = parseSchedulerConfig({
  _class_name: 'UnCLIPScheduler',
  _diffusers_version: '0.17.0.dev0',
  clip_sample: true,
  clip_sample_range: 10.0,
  num_train_timesteps: 1000,
  prediction_type: 'sample',
  variance_type: 'fixed_small_log',
});

const noNoise = () => ({ noise: fixedNoise([]) });

/** betas_for_alpha_bar in float64: β_i = min(1 − ā((i+1)/T)/ā(i/T), 0.999). */
function referenceBeta(i: number): number {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  return Math.min(1 - alphaBar((i + 1) / 1000) / alphaBar(i / 1000), 0.999);
}

/** ᾱ_t = Π_{s≤t}(1 − β_s) in float64. */
function referenceAlphaBar(t: number): number {
  let product = 1;
  for (let s = 0; s <= t; s++) product *= 1 - referenceBeta(s);
  return product;
}

test('betas: squaredcos_cap_v2 rounded to float32; β_999 is the 0.999 cap', () => {
  const { betas } = unclipScheduler(PRIOR, 25, noNoise()).schedule;
  for (const i of [0, 1, 500, 998]) assert.equal(betas[i], Math.fround(referenceBeta(i)), `β_${i}`);
  // numpy: 4.1284224e-05, 4.614175e-05, 0.0031556915, 0.7499994 (float32)
  close(betas[0], 4.1284224e-5);
  close(betas[500], 0.0031556915);
  close(betas[998], 0.7499994);
  assert.equal(betas[999], Math.fround(0.999));
  // ā(1) = cos²(π/2) ≈ 0, so the uncapped β_999 is ≈ 1.
  assert.equal(referenceBeta(999), 0.999);
});

test('alphas_cumprod: float32 entries of a float64 running product, as torch.cumprod on the CPU', () => {
  const { alphasCumprod } = unclipScheduler(PRIOR, 25, noNoise()).schedule;
  for (const t of [0, 1, 42, 500, 916, 957]) close(alphasCumprod[t], referenceAlphaBar(t), 2e-6, `ᾱ_${t}`);
  // numpy: np.cumprod(alphas_f32.astype(float64)).astype(float32)
  assert.equal(alphasCumprod[0], Math.fround(0.9999587));
  assert.equal(alphasCumprod[42], Math.fround(0.9938515));
  assert.equal(alphasCumprod[500], Math.fround(0.49228504));
  assert.equal(alphasCumprod[957], Math.fround(0.0042782337));
  assert.equal(alphasCumprod[999], Math.fround(2.428735e-9));
  // A float32 accumulator (np.cumprod(alphas_f32)) would drift: 0.9938513 at t = 42.
  assert.notEqual(alphasCumprod[42], Math.fround(0.9938513));
});

test('25 steps: r = 999/24, t_k = round_half_even(k·r) reversed', () => {
  const expected = [
    999, 957, 916, 874, 832, 791, 749, 708, 666, 624, 583, 541, 500, 458, 416, 375, 333, 291, 250, 208, 166,
    125, 83, 42, 0,
  ];
  assert.deepEqual([...unclipTimesteps(PRIOR, 25)], expected);
  assert.deepEqual([...unclipScheduler(PRIOR, 25, noNoise()).timesteps], expected);
  // k·r hits a half at k = 4 (166.5) and k = 20 (832.5): numpy.round goes to the even neighbour,
  // Math.round up, which is off by one there.
  const r = 999 / 24;
  assert.equal(20 * r, 832.5);
  assert.equal(4 * r, 166.5);
  assert.deepEqual([Math.round(20 * r), Math.round(4 * r)], [833, 167]);
  assert.deepEqual([roundHalfEven(20 * r), roundHalfEven(4 * r)], [832, 166]);
  assert.deepEqual([...unclipTimesteps(PRIOR, 2)], [999, 0]);
  assert.throws(() => unclipTimesteps(PRIOR, 1), RangeError);
  assert.throws(() => unclipTimesteps(PRIOR, 1001), RangeError);
});

test('step 957 → 916 worked by hand: x0 clamped to ±10, μ = c₀·x0 + c₁·x, plus σ·z', () => {
  const schedule = unclipScheduler(PRIOR, 25, { noise: fixedNoise([[0.1, -0.4, 1.3]]) });
  const k = schedule.coefficients[1];
  assert.deepEqual([k.t, k.prev], [957, 916]);
  // β = 1 − ᾱ_957/ᾱ_916 (916 ≠ 957 − 1), α = 1 − β;
  // c₀ = √ᾱ_916·β/(1 − ᾱ_957), c₁ = √α·(1 − ᾱ_916)/(1 − ᾱ_957), σ = √(β·(1 − ᾱ_916)/(1 − ᾱ_957)).
  const [at, ap] = [referenceAlphaBar(957), referenceAlphaBar(916)];
  const beta = 1 - at / ap;
  close(k.c0, (Math.sqrt(ap) * beta) / (1 - at), 2e-6);
  close(k.c1, (Math.sqrt(1 - beta) * (1 - ap)) / (1 - at), 2e-6);
  close(k.sigma, Math.sqrt((beta * (1 - ap)) / (1 - at)), 2e-6);
  // numpy on the float32 tables: c₀ 0.0962358639, c₁ 0.5007809471, σ 0.8565352617
  close(k.c0, 0.0962358639);
  close(k.c1, 0.5007809471);
  close(k.sigma, 0.8565352617);
  const latents = Float32Array.of(0.3, -1.2, 4.0);
  schedule.step(1, latents, Float32Array.of(0.5, 12.0, -0.7));
  // 0.0962359·0.5 + 0.5007809·0.3 + 0.8565353·0.1, with 12 → 10, … (numpy, on the float32
  // values the Float32Arrays hold: −1.2 is −1.20000005)
  close(latents[0], 0.2840057495);
  close(latents[1], 0.0188073692);
  close(latents[2], 3.0492544842);
});

test('step 42 → 0 follows the float32 tables, where 1 − ᾱ_0 carries float32 rounding', () => {
  const schedule = unclipScheduler(PRIOR, 25, { noise: fixedNoise([[0.1, -0.4, 1.3]]) });
  const k = schedule.coefficients[23];
  assert.deepEqual([k.t, k.prev], [42, 0]);
  // numpy, float32 tables: σ 0.0064054834 (float64 tables would give 0.0064038047)
  close(k.sigma, 0.0064054834);
  const latents = Float32Array.of(0.3, -1.2, 4.0);
  schedule.step(23, latents, Float32Array.of(0.5, 12.0, -0.7));
  close(latents[0], 0.4993010327);
  close(latents[1], 9.9224255);
  close(latents[2], -0.660194592);
});

test('the last step (t = 0 → −1) draws no noise: β = β_0 since −1 = t − 1, ᾱ_prev = 1', () => {
  const noise = fixedNoise([]);
  const schedule = unclipScheduler(PRIOR, 25, { noise });
  const k = schedule.coefficients[24];
  assert.deepEqual([k.t, k.prev, k.noisy], [0, -1, false]);
  const { betas, alphasCumprod } = schedule.schedule;
  // c₀ = √1·β_0/(1 − ᾱ_0) = 0.9994723 (not 1: β_0 and 1 − ᾱ_0 differ by float32 rounding), c₁ = 0.
  close(k.c0, betas[0] / (1 - alphasCumprod[0]), 1e-12);
  close(k.c0, 0.9994723498);
  assert.equal(k.c1, 0);
  const latents = Float32Array.of(0.3, -1.2, 4.0);
  schedule.step(24, latents, Float32Array.of(0.5, 12.0, -0.7));
  assert.equal(noise.calls, 0);
  close(latents[0], 0.4997361749);
  close(latents[1], 9.9947234975);
  close(latents[2], -0.6996306329);
});

test('a 25-step run draws noise on the first 24 steps only, into one reused buffer', () => {
  const buffers = new Set<Float32Array>();
  let calls = 0;
  const schedule = unclipScheduler(PRIOR, 25, {
    noise: (out) => {
      buffers.add(out);
      calls++;
      out.fill(0.5);
    },
  });
  const latents = new Float32Array(2 * 1280).fill(1);
  const output = new Float32Array(latents.length).fill(-0.25);
  for (let step = 0; step < 25; step++) schedule.step(step, latents, output);
  assert.equal(calls, 24);
  assert.equal(buffers.size, 1);
  assert.equal([...buffers][0]?.length, 2 * 1280);
  assert.ok(latents.every((v) => Number.isFinite(v)));
});

test('deterministic per seed, and image i of a batch equals a single run at seed + i', () => {
  const run = (seed: number, images: number) => {
    const perImage = 768;
    const noise = batchNoise(seed, images, perImage);
    const schedule = unclipScheduler(PRIOR, 25, { noise: (out) => noise.fill(out) });
    const latents = new Float32Array(images * perImage);
    noise.fill(latents);
    const output = new Float32Array(latents.length);
    for (let step = 0; step < 25; step++) {
      // A stand-in prior: x̂₀ = 0.8·x + 0.1.
      for (let i = 0; i < latents.length; i++) output[i] = 0.8 * latents[i] + 0.1;
      schedule.step(step, latents, output);
    }
    return latents;
  };
  assert.deepEqual(run(42, 1), run(42, 1));
  assert.notDeepEqual(run(42, 1), run(43, 1));
  const batch = run(42, 2);
  assert.deepEqual(batch.subarray(768), run(43, 1));
  assert.deepEqual(batch.subarray(0, 768), run(42, 1));
});

test('epsilon prediction: x0 = (x − √(1−ᾱ_t)·ε)/√ᾱ_t, clamped to the default range 1', () => {
  const config = { num_train_timesteps: 1000 } as SchedulerConfig;
  const schedule = unclipScheduler(config, 25, { noise: fixedNoise([[0]]) });
  const k = schedule.coefficients[12];
  assert.equal(k.t, 500);
  const at = schedule.schedule.alphasCumprod[500];
  const [x, eps] = [0.7, 0.2];
  const x0 = Math.min((x - Math.sqrt(1 - at) * eps) / Math.sqrt(at), 1);
  const latents = Float32Array.of(x);
  schedule.step(12, latents, Float32Array.of(eps));
  close(latents[0], k.c0 * x0 + k.c1 * x);
});

test('refuses what it does not implement, and a model output of another size', () => {
  assert.throws(() => unclipScheduler(PRIOR, 25), /noise source/);
  assert.throws(
    () => unclipScheduler({ ...PRIOR, variance_type: 'learned_range' }, 25, noNoise()),
    /variance_type/,
  );
  assert.throws(() => unclipScheduler({ ...PRIOR, prediction_type: 'v_prediction' }, 25, noNoise()));
  assert.throws(() => unclipScheduler({ ...PRIOR, beta_schedule: 'linear' }, 25, noNoise()), /beta_schedule/);
  const schedule = unclipScheduler(PRIOR, 25, noNoise());
  assert.throws(() => schedule.step(24, new Float32Array(4), new Float32Array(8)), RangeError);
  assert.equal(schedule.name, 'UnCLIPScheduler');
  assert.equal(schedule.initNoiseSigma, 1);
  assert.equal(schedule.inputScale(3), 1);
});
