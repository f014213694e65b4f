import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type DemoModelOptions, writeDemoModel } from './demo-model.ts';
import { loadTextToImage } from './load-model.ts';
import { GenerationInputError } from './model-errors.ts';
import { chwToRgb } from './sd-pipeline.ts';
import type { GenerateRequest, TextToImage } from './text-to-image.ts';

let root: string;
let model: TextToImage;

async function demo(name: string, options?: DemoModelOptions): Promise<string> {
  const dir = join(root, name);
  await writeDemoModel(dir, options);
  return dir;
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'easel-sd-'));
  model = await loadTextToImage(await demo('default'), { provider: 'cpu' });
});

after(async () => {
  await model?.release();
  await rm(root, { recursive: true, force: true });
});

/** Byte comparison with a short message (deepEqual's diff of large arrays takes seconds). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

function request(overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    prompt: 'a photo of a cat',
    negativePrompt: 'blurry',
    width: 64,
    height: 64,
    steps: 6,
    guidanceScale: 7.5,
    seed: 1234,
    numImages: 1,
    ...overrides,
  };
}

test('loads the demo model through model_index.json', () => {
  assert.equal(model.info.family, 'OnnxStableDiffusionPipeline');
  assert.equal(model.info.provider, 'cpu');
  assert.equal(model.info.scheduler, 'EulerDiscreteScheduler');
});

test('generates a 64×64 image with timings and the request seed', async () => {
  const steps: number[] = [];
  const result = await model.generate(request({ onStep: (step, total) => steps.push(step * 100 + total) }));
  assert.equal(result.images.length, 1);
  const [image] = result.images;
  assert.equal(image.width, 64);
  assert.equal(image.height, 64);
  assert.ok(image.rgb instanceof Uint8Array);
  assert.equal(image.rgb.length, 64 * 64 * 3);
  assert.ok(new Set(image.rgb).size > 50, 'the image is not a flat colour');
  assert.deepEqual(steps, [106, 206, 306, 406, 506, 606]);
  assert.equal(result.seed, 1234);
  assert.equal(result.scheduler, 'EulerDiscreteScheduler');
  assert.equal(result.promptTruncated, false);
  for (const ms of Object.values(result.timings)) assert.ok(ms >= 0);
});

test('generates a 512×512 image and a non-square one', async () => {
  const square = await model.generate(request({ width: 512, height: 512, steps: 3 }));
  assert.equal(square.images[0].width, 512);
  assert.equal(square.images[0].height, 512);
  assert.equal(square.images[0].rgb.length, 512 * 512 * 3);
  const wide = await model.generate(request({ width: 96, height: 48, steps: 2 }));
  assert.deepEqual(
    [wide.images[0].width, wide.images[0].height, wide.images[0].rgb.length],
    [96, 48, 96 * 48 * 3],
  );
});

test('the same seed gives identical bytes; another seed gives a different image', async () => {
  const [a, b, c] = [
    await model.generate(request()),
    await model.generate(request()),
    await model.generate(request({ seed: 1235 })),
  ];
  assert.ok(sameBytes(a.images[0].rgb, b.images[0].rgb), 'images differ');
  assert.ok(!sameBytes(a.images[0].rgb, c.images[0].rgb), 'images are identical');
});

test('a batch of 2 equals two single runs at seed s and s + 1', async () => {
  const batch = await model.generate(request({ numImages: 2, seed: 0xffff_ffff }));
  const first = await model.generate(request({ seed: 0xffff_ffff }));
  const second = await model.generate(request({ seed: 0 }));
  assert.equal(batch.images.length, 2);
  assert.ok(sameBytes(batch.images[0].rgb, first.images[0].rgb), 'images differ');
  assert.ok(sameBytes(batch.images[1].rgb, second.images[0].rgb), 'images differ');
  assert.ok(!sameBytes(batch.images[0].rgb, batch.images[1].rgb), 'images are identical');
});

test('the prompt, the negative prompt and the guidance scale all change the image', async () => {
  const base = (await model.generate(request())).images[0].rgb;
  const otherPrompt = (await model.generate(request({ prompt: 'a watercolour of a lighthouse' }))).images[0]
    .rgb;
  const otherNegative = (await model.generate(request({ negativePrompt: '' }))).images[0].rgb;
  const unguided = (await model.generate(request({ guidanceScale: 1 }))).images[0].rgb;
  assert.ok(!sameBytes(base, otherPrompt), 'otherPrompt is identical to base');
  assert.ok(!sameBytes(base, otherNegative), 'otherNegative is identical to base');
  assert.ok(!sameBytes(base, unguided), 'unguided is identical to base');
});

test('a long prompt is reported as truncated', async () => {
  const result = await model.generate(request({ prompt: 'cat '.repeat(90), steps: 1 }));
  assert.equal(result.promptTruncated, true);
});

test('aborting from onStep at step 2 of 10 stops the loop and rejects with the reason', async () => {
  const controller = new AbortController();
  const calls: number[] = [];
  await assert.rejects(
    model.generate(
      request({
        steps: 10,
        signal: controller.signal,
        onStep: (step) => {
          calls.push(step);
          if (step === 2) controller.abort(new Error('cancelled by user'));
        },
      }),
    ),
    { message: 'cancelled by user' },
  );
  assert.deepEqual(calls, [1, 2]);
});

test('an already aborted signal rejects before any step', async () => {
  let calls = 0;
  await assert.rejects(model.generate(request({ signal: AbortSignal.abort(), onStep: () => calls++ })), {
    name: 'AbortError',
  });
  assert.equal(calls, 0);
});

test('bad sizes and settings are GenerationInputError naming the field', async () => {
  const cases: [Partial<GenerateRequest>, string][] = [
    [{ width: 100 }, 'width'],
    [{ height: 0 }, 'height'],
    [{ steps: 0 }, 'steps'],
    [{ steps: 2.5 }, 'steps'],
    [{ numImages: 0 }, 'numImages'],
    [{ seed: -1 }, 'seed'],
    [{ seed: 2 ** 32 }, 'seed'],
    [{ guidanceScale: Number.NaN }, 'guidanceScale'],
  ];
  for (const [overrides, field] of cases) {
    await assert.rejects(model.generate(request(overrides)), (error: unknown) => {
      assert.ok(error instanceof GenerationInputError, `${field}: ${error}`);
      assert.equal(error.code, 'invalid_generation_input');
      assert.equal(error.field, field);
      return true;
    });
  }
  await assert.rejects(model.generate(request({ width: 100 })), /width must be a positive multiple of 8/);
});

test('int64 timestep and int64 input_ids exports load and run', async () => {
  const variant = await loadTextToImage(
    await demo('int64', { timestepType: 'int64', inputIdsType: 'int64' }),
    {
      provider: 'cpu',
    },
  );
  try {
    const result = await variant.generate(request());
    assert.equal(result.images[0].rgb.length, 64 * 64 * 3);
  } finally {
    await variant.release();
  }
});

test('a per-sample [batch] timestep input gets one value per row; batches still match single runs', async () => {
  const variant = await loadTextToImage(await demo('per-sample', { timestepPerSample: true }), {
    provider: 'cpu',
  });
  try {
    const batch = await variant.generate(request({ numImages: 2 }));
    const single = await variant.generate(request({ seed: 1235 }));
    assert.ok(sameBytes(batch.images[1].rgb, single.images[0].rgb), 'images differ');
  } finally {
    await variant.release();
  }
});

test('a DDIM scheduler config runs DDIM', async () => {
  const variant = await loadTextToImage(await demo('ddim', { scheduler: 'DDIMScheduler' }), {
    provider: 'cpu',
  });
  try {
    assert.equal(variant.info.scheduler, 'DDIMScheduler');
    const result = await variant.generate(request());
    assert.equal(result.scheduler, 'DDIMScheduler');
    const again = await variant.generate(request());
    assert.ok(sameBytes(result.images[0].rgb, again.images[0].rgb), 'images differ');
  } finally {
    await variant.release();
  }
});

test('release() frees the sessions and later generations fail', async () => {
  const variant = await loadTextToImage(await demo('released'), { provider: 'cpu' });
  await variant.release();
  await variant.release();
  await assert.rejects(variant.generate(request()), /released/);
});

test('chwToRgb maps [-1, 1] to 0..255 with rounding and clamping, interleaving channels', () => {
  // 2 pixels: R plane, G plane, B plane.
  const chw = Float32Array.of(-1, 1, 0, -2, 2, 0.5);
  assert.deepEqual([...chwToRgb(chw, 2, 1)], [0, 128, 255, 255, 0, 191]);
});
