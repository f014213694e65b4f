import assert from 'node:assert/strict';
import { test } from 'node:test';
import { batchNoise, fillGaussian, gaussianStream, imageSeed, initialLatents, mulberry32 } from './random.ts';

test('the same seed gives the same sequence, a different seed a different one', () => {
  const a = new Float32Array(1000);
  const b = new Float32Array(1000);
  const c = new Float32Array(1000);
  fillGaussian(a, 7);
  fillGaussian(b, 7);
  fillGaussian(c, 8);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test('values are pinned: changing the generator would change every seeded image users have', () => {
  const values = new Float64Array(3);
  fillGaussian(values, 42);
  assert.deepEqual(
    [...values].map((v) => v.toFixed(6)),
    ['-1.284838', '0.432780', '-0.945353'],
  );
});

test('mulberry32 matches the reference implementation (bryc/code, PRNGs.md)', () => {
  // The published JavaScript, verbatim apart from types: its state grows as a double, ours wraps.
  function reference(seed: number) {
    let a = seed;
    return () => {
      a += 0x6d2b79f5;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  for (const seed of [0, 1, 42, 0xffff_ffff]) {
    const ours = mulberry32(seed);
    const theirs = reference(seed);
    for (let i = 0; i < 1000; i++) assert.equal(ours(), theirs(), `seed ${seed}, draw ${i}`);
  }
});

test('samples are standard normal (mean 0, variance 1, symmetric tails)', () => {
  const values = new Float64Array(200_000);
  fillGaussian(values, 123);
  let sum = 0;
  let squares = 0;
  let beyondTwo = 0;
  for (const v of values) {
    sum += v;
    squares += v * v;
    if (Math.abs(v) > 2) beyondTwo++;
  }
  const mean = sum / values.length;
  assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
  assert.ok(Math.abs(squares / values.length - 1) < 0.02, `variance ${squares / values.length}`);
  // P(|z| > 2) = 0.0455 for a standard normal.
  assert.ok(Math.abs(beyondTwo / values.length - 0.0455) < 0.003);
});

test('image i of a batch equals a single image at seed + i, wrapping at 2^32', () => {
  const perImage = 64;
  const batch = initialLatents(0xffff_fffe, 3, perImage, 2.5);
  for (let i = 0; i < 3; i++) {
    const single = initialLatents(imageSeed(0xffff_fffe, i), 1, perImage, 2.5);
    assert.deepEqual(batch.subarray(i * perImage, (i + 1) * perImage), single);
  }
  assert.equal(imageSeed(0xffff_ffff, 1), 0);
  const unscaled = new Float32Array(perImage);
  fillGaussian(unscaled, 0xffff_fffe);
  assert.equal(batch[0], Math.fround(unscaled[0] * 2.5));
});

test('a stream continues across fills, odd lengths included: 3 + 5 values are the first 8', () => {
  const whole = new Float64Array(8);
  fillGaussian(whole, 99);
  const stream = gaussianStream(99);
  const first = new Float64Array(3);
  const second = new Float64Array(5);
  stream.fill(first);
  stream.fill(second);
  assert.deepEqual([...first, ...second], [...whole]);
  const empty = new Float64Array(0);
  stream.fill(empty);
  const next = new Float64Array(2);
  stream.fill(next);
  const ten = new Float64Array(10);
  fillGaussian(ten, 99);
  assert.deepEqual([...next], [...ten.slice(8)]);
});

test('per-step batch noise: image i draws the next values of the stream seeded with seed + i', () => {
  const perImage = 6;
  const noise = batchNoise(500, 4, perImage);
  const latents = initialLatents(500, 4, perImage, 1, noise);
  const step = new Float32Array(4 * perImage);
  noise.fill(step);
  noise.fill(step); // the second step's noise
  for (let i = 0; i < 4; i++) {
    // Image i alone: its latent, then two steps of noise, all from one stream.
    const single = new Float32Array(3 * perImage);
    gaussianStream(500 + i).fill(single);
    assert.deepEqual(latents.subarray(i * perImage, (i + 1) * perImage), single.subarray(0, perImage));
    assert.deepEqual(step.subarray(i * perImage, (i + 1) * perImage), single.subarray(2 * perImage));
  }
  assert.throws(() => noise.fill(new Float32Array(5)), RangeError);
});
