import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { encodeJpeg } from '../../jpeg.ts';
import { type DemoModelOptions, writeDemoModel } from '../demo/sd-model.ts';
import { loadTextToImage } from '../load-model.ts';
import { GenerationInputError } from '../model-errors.ts';
import {
  type GenerateRequest,
  type GenerateResult,
  KARRAS_SCHEDULER_CHOICES,
  SCHEDULER_CHOICES,
  type SchedulerChoice,
  type TextToImage,
} from '../text-to-image.ts';

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
  assert.equal(model.info.scheduler, 'euler');
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
  assert.equal(result.scheduler, 'euler');
  assert.equal(result.promptTruncated, false);
  for (const ms of Object.values(result.timings)) assert.ok(ms >= 0);
  const { unetMs, unetCalls, denoiseMs } = result.timings;
  assert.equal(unetCalls, 6, 'one UNet run per step, both guidance halves in one batch');
  assert.ok(unetMs > 0 && unetMs <= denoiseMs, `unetMs ${unetMs}, denoiseMs ${denoiseMs}`);
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
    assert.equal(variant.info.scheduler, 'ddim');
    const result = await variant.generate(request());
    assert.equal(result.scheduler, 'ddim');
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

/** Every sampler a request can name, with Karras σ where it applies. */
const VARIANTS: { scheduler: SchedulerChoice; karras: boolean; label: string }[] = SCHEDULER_CHOICES.flatMap(
  (scheduler) => [
    { scheduler, karras: false, label: scheduler },
    ...((KARRAS_SCHEDULER_CHOICES as readonly string[]).includes(scheduler)
      ? [{ scheduler, karras: true, label: `${scheduler}_karras` }]
      : []),
  ],
);

test('every scheduler choice produces an image and reports what ran', async () => {
  assert.equal(VARIANTS.length, 8);
  const images = new Map<string, Uint8Array>();
  for (const { scheduler, karras, label } of VARIANTS) {
    const result = await model.generate(request({ scheduler, karras }));
    assert.equal(result.scheduler, label);
    assert.equal(result.timings.unetCalls, 6);
    const { rgb } = result.images[0];
    assert.equal(rgb.length, 64 * 64 * 3);
    assert.ok(new Set(rgb).size > 50, `${label}: the image is a flat colour`);
    for (const [other, image] of images) assert.ok(!sameBytes(rgb, image), `${label} equals ${other}`);
    images.set(label, rgb);
  }
});

test('for every scheduler the same seed gives identical RGB and JPEG bytes, another seed not', async () => {
  for (const { scheduler, karras, label } of VARIANTS) {
    const a = (await model.generate(request({ scheduler, karras }))).images[0];
    const b = (await model.generate(request({ scheduler, karras }))).images[0];
    const c = (await model.generate(request({ scheduler, karras, seed: 1235 }))).images[0];
    assert.ok(sameBytes(a.rgb, b.rgb), `${label}: RGB differs`);
    const [jpegA, jpegB, jpegC] = await Promise.all([encodeJpeg(a), encodeJpeg(b), encodeJpeg(c)]);
    assert.ok(jpegA.equals(jpegB), `${label}: JPEG differs`);
    assert.ok(!sameBytes(a.rgb, c.rgb), `${label}: another seed gives the same image`);
    assert.ok(!jpegA.equals(jpegC), `${label}: another seed gives the same JPEG`);
  }
});

async function assertBatchMatchesSingles(overrides: Partial<GenerateRequest>): Promise<void> {
  const seed = 0xffff_fffe; // wraps: the singles run at 0xfffffffe, 0xffffffff, 0, 1
  const batch = await model.generate(request({ ...overrides, numImages: 4, seed }));
  assert.equal(batch.images.length, 4);
  assert.equal(batch.timings.unetCalls, overrides.steps ?? 6, 'a batch is one UNet run per step');
  const singles: GenerateResult[] = [];
  for (let i = 0; i < 4; i++)
    singles.push(await model.generate(request({ ...overrides, seed: (seed + i) >>> 0 })));
  for (let i = 0; i < 4; i++) {
    assert.ok(
      sameBytes(batch.images[i].rgb, singles[i].images[0].rgb),
      `${batch.scheduler}: image ${i} differs`,
    );
  }
  assert.ok(!sameBytes(batch.images[0].rgb, batch.images[1].rgb), 'batch images are identical');
}

test('a batch of 4 equals 4 single runs at s..s+3: deterministic Euler', async () => {
  await assertBatchMatchesSingles({ scheduler: 'euler' });
});

test('a batch of 4 equals 4 single runs at s..s+3: stochastic Euler ancestral (per-image step noise)', async () => {
  await assertBatchMatchesSingles({ scheduler: 'euler_a' });
});

test('a batch of 4 equals 4 single runs for LCM, DPM++ 2M Karras and unguided Euler a too', async () => {
  await assertBatchMatchesSingles({ scheduler: 'lcm', steps: 4 });
  await assertBatchMatchesSingles({ scheduler: 'dpmpp_2m', karras: true });
  await assertBatchMatchesSingles({ scheduler: 'euler_a', guidanceScale: 1 });
});

test('Euler ancestral’s step noise matters: it differs from Euler at the same seed and σ', async () => {
  const euler = await model.generate(request({ scheduler: 'euler' }));
  const ancestral = await model.generate(request({ scheduler: 'euler_a' }));
  assert.ok(!sameBytes(euler.images[0].rgb, ancestral.images[0].rgb));
});

test('bad scheduler settings are GenerationInputError naming the field', async () => {
  const cases: [Partial<GenerateRequest>, string, RegExp][] = [
    [{ scheduler: 'pndm' as SchedulerChoice }, 'scheduler', /scheduler must be one of euler, euler_a/],
    [{ scheduler: 'ddim', karras: true }, 'karras', /karras applies to euler, euler_a, dpmpp_2m, not ddim/],
    [{ scheduler: 'lcm', karras: true }, 'karras', /not lcm/],
    [{ karras: 'yes' as unknown as boolean }, 'karras', /boolean/],
    [{ scheduler: 'lcm', steps: 51 }, 'steps', /from 1 to 50 for lcm/],
  ];
  for (const [overrides, field, message] of cases) {
    await assert.rejects(model.generate(request(overrides)), (error: unknown) => {
      assert.ok(error instanceof GenerationInputError, `${field}: ${error}`);
      assert.equal(error.field, field);
      assert.match(error.message, message);
      return true;
    });
  }
  // karras: false is fine anywhere.
  const ddim = await model.generate(request({ scheduler: 'ddim', karras: false, steps: 2 }));
  assert.equal(ddim.scheduler, 'ddim');
});

test('a DPMSolverMultistepScheduler config as diffusers saves it (-Infinity) is the default, Karras included', async () => {
  const dir = await demo('dpm');
  await writeFile(
    join(dir, 'scheduler/scheduler_config.json'),
    `{
  "_class_name": "DPMSolverMultistepScheduler",
  "_diffusers_version": "0.30.0",
  "algorithm_type": "dpmsolver++",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "euler_at_final": false,
  "final_sigmas_type": "zero",
  "lambda_min_clipped": -Infinity,
  "lower_order_final": true,
  "num_train_timesteps": 1000,
  "prediction_type": "epsilon",
  "solver_order": 2,
  "solver_type": "midpoint",
  "steps_offset": 1,
  "timestep_spacing": "leading",
  "trained_betas": null,
  "use_karras_sigmas": true,
  "variance_type": null
}
`,
  );
  const variant = await loadTextToImage(dir, { provider: 'cpu' });
  try {
    assert.equal(variant.info.scheduler, 'dpmpp_2m_karras');
    const byDefault = await variant.generate(request());
    assert.equal(byDefault.scheduler, 'dpmpp_2m_karras');
    const explicit = await variant.generate(request({ scheduler: 'dpmpp_2m', karras: true }));
    assert.ok(sameBytes(byDefault.images[0].rgb, explicit.images[0].rgb), 'default and explicit differ');
    const plain = await variant.generate(request({ karras: false }));
    assert.equal(plain.scheduler, 'dpmpp_2m');
    assert.ok(!sameBytes(byDefault.images[0].rgb, plain.images[0].rgb), 'karras changed nothing');
    // The config's use_karras_sigmas carries to another sampler, as from_config would.
    assert.equal((await variant.generate(request({ scheduler: 'euler' }))).scheduler, 'euler_karras');
  } finally {
    await variant.release();
  }
});
