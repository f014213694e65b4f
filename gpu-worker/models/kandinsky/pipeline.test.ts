// The Kandinsky 2.1 / 2.2 pipelines on the demo models, through real ONNX Runtime sessions. Besides
// the images, some tests watch what each session is fed (a spy on InferenceSession.run), to show
// which stage a prompt or a negative prompt reaches.
import assert from 'node:assert/strict';
import { copyFile, cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import ort from 'onnxruntime-node';
import { writeDemoKandinskyModel } from '../demo/kandinsky-model.ts';
import { loadTextToImage } from '../load-model.ts';
import { GenerationInputError, ModelLoadError } from '../model-errors.ts';
import type { GenerateRequest, SchedulerChoice, TextToImage } from '../text-to-image.ts';
import { KANDINSKY_FILES as FILES, type KandinskyVersion } from './layout.ts';

const VERSIONS: readonly KandinskyVersion[] = ['2.1', '2.2'];
const OWN_SCHEDULER = { '2.1': 'ddim', '2.2': 'ddpm' } as const;
const FAMILY = { '2.1': 'KandinskyCombinedPipeline', '2.2': 'KandinskyV22CombinedPipeline' } as const;
const PRIOR_STEPS = 25;

let root: string;
let copies = 0;
const dirs = {} as Record<KandinskyVersion, string>;
const models = {} as Record<KandinskyVersion, TextToImage>;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'easel-kandinsky-pipeline-'));
  for (const version of VERSIONS) {
    dirs[version] = join(root, `demo-${version}`);
    await writeDemoKandinskyModel(dirs[version], { version });
    models[version] = await loadTextToImage(dirs[version], { provider: 'cpu' });
  }
});

after(async () => {
  await Promise.all(VERSIONS.map((version) => models[version]?.release()));
  await rm(root, { recursive: true, force: true });
});

/** Byte comparison with a short message (deepEqual's diff of large arrays takes seconds). */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

function request(overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return {
    prompt: 'a red cat on the roof',
    negativePrompt: 'blurry',
    width: 128,
    height: 64,
    steps: 4,
    guidanceScale: 4,
    seed: 1234,
    numImages: 1,
    ...overrides,
  };
}

async function rgb(version: KandinskyVersion, overrides: Partial<GenerateRequest> = {}): Promise<Uint8Array> {
  return (await models[version].generate(request(overrides))).images[0].rgb;
}

// --- A spy on the sessions' run calls -------------------------------------------------------

type Stage = 'priorText' | 'prior' | 'text' | 'unet' | 'movq';

/** Which session a run is, from its feed names. */
function stageOf(feeds: Record<string, unknown>): Stage {
  if ('hidden_states' in feeds) return 'prior';
  if ('sample' in feeds) return 'unet';
  if ('latent_sample' in feeds) return 'movq';
  if ('attention_mask' in feeds) return 'text';
  return 'priorText';
}

interface Feed {
  data: ArrayBufferView & ArrayLike<unknown>;
  dims: readonly number[];
}

interface Runs {
  count: Record<Stage, number>;
  /** Copies of each stage's first feeds (the pipeline reuses its buffers in place). */
  first: Partial<Record<Stage, Record<string, Feed>>>;
}

/**
 * Runs `fn` with InferenceSession.run spied on; `onRun` sees each run before it starts. The
 * tests of a file run one at a time, so no other generation passes through the spy.
 */
async function spied<T>(
  fn: () => Promise<T>,
  onRun?: (stage: Stage, count: number) => void,
): Promise<{ runs: Runs; result?: T; error?: unknown }> {
  const runs: Runs = { count: { priorText: 0, prior: 0, text: 0, unet: 0, movq: 0 }, first: {} };
  // InferenceSession is typed as a factory; at run time it is the class every session is made of.
  const proto = (ort.InferenceSession as unknown as { prototype: ort.InferenceSession }).prototype;
  const original = proto.run;
  proto.run = function (this: ort.InferenceSession, feeds: Record<string, ort.Tensor>, ...rest: unknown[]) {
    const stage = stageOf(feeds);
    runs.count[stage]++;
    runs.first[stage] ??= Object.fromEntries(
      Object.entries(feeds).map(([name, tensor]) => [
        name,
        { data: (tensor.data as Float32Array).slice(), dims: [...tensor.dims] },
      ]),
    );
    onRun?.(stage, runs.count[stage]);
    return Reflect.apply(original, this, [feeds, ...rest]);
  } as unknown as typeof original;
  try {
    return { runs, result: await fn() };
  } catch (error) {
    return { runs, error };
  } finally {
    proto.run = original;
  }
}

/** Row `r` of a feed (its first axis). */
function row(feed: Feed | undefined, r: number): ArrayBufferView {
  assert.ok(feed, 'the feed was not recorded');
  const size = feed.dims.slice(1).reduce((a, b) => a * b, 1);
  assert.ok(r < (feed.dims[0] ?? 0), `row ${r} of [${feed.dims}]`);
  return (feed.data as Float32Array).subarray(r * size, (r + 1) * size);
}

async function zeroImageEmbeds(version: KandinskyVersion): Promise<Float32Array> {
  return Float32Array.from(JSON.parse(await readFile(join(dirs[version], FILES.zeroImageEmbeds), 'utf8')));
}

// --- Generation ---------------------------------------------------------------------------------

for (const version of VERSIONS) {
  const own = OWN_SCHEDULER[version];

  describe(`Kandinsky ${version} demo`, () => {
    test('loads through model_index.json with its own sampler', () => {
      const { info } = models[version];
      assert.deepEqual(
        [info.family, info.provider, info.scheduler, info.dir],
        [FAMILY[version], 'cpu', own, dirs[version]],
      );
    });

    test(`generates numImages images of the requested size with ${own}`, async () => {
      const result = await models[version].generate(
        request({ numImages: 2, scheduler: own as SchedulerChoice }),
      );
      assert.equal(result.scheduler, own);
      assert.equal(result.seed, 1234);
      assert.equal(result.promptTruncated, false);
      assert.equal(result.images.length, 2);
      for (const image of result.images) {
        assert.deepEqual([image.width, image.height, image.rgb.length], [128, 64, 128 * 64 * 3]);
        assert.ok(image.rgb instanceof Uint8Array);
        assert.ok(new Set(image.rgb).size > 50, 'the image is not a flat colour');
      }
      assert.ok(!sameBytes(result.images[0].rgb, result.images[1].rgb), 'the two images are identical');
      // Naming the model's own sampler is the same as naming none.
      const byDefault = await models[version].generate(request({ numImages: 2 }));
      assert.equal(byDefault.scheduler, own);
      assert.ok(sameBytes(byDefault.images[1].rgb, result.images[1].rgb), 'default and explicit differ');
      // Portrait, and latents of another size (64×192 → 8×24).
      const tall = (await models[version].generate(request({ width: 64, height: 192, steps: 2 }))).images[0];
      assert.deepEqual([tall.width, tall.height, tall.rgb.length], [64, 192, 64 * 192 * 3]);
    });

    test('reports decoder steps 1..N and the prior’s and the UNet’s runs in the timings', async () => {
      const seen: [number, number][] = [];
      const result = await models[version].generate(
        request({ steps: 5, onStep: (step, total) => seen.push([step, total]) }),
      );
      assert.deepEqual(
        seen,
        [1, 2, 3, 4, 5].map((step) => [step, 5]),
      );
      const t = result.timings;
      assert.equal(t.priorCalls, PRIOR_STEPS, 'the prior runs its fixed 25 steps');
      assert.equal(t.unetCalls, 5, 'one UNet run per decoder step, both guidance halves in one batch');
      for (const [name, ms] of Object.entries(t)) assert.ok(Number.isFinite(ms) && ms >= 0, `${name} ${ms}`);
      assert.ok(
        (t.priorMs ?? 0) > 0 && (t.priorMs ?? 0) <= t.encodeMs,
        `priorMs ${t.priorMs}, encodeMs ${t.encodeMs}`,
      );
      assert.ok(
        (t.priorMs ?? 0) <= (t.priorLoopMs ?? 0) && (t.priorLoopMs ?? 0) <= t.encodeMs,
        `priorMs ${t.priorMs}, priorLoopMs ${t.priorLoopMs}, encodeMs ${t.encodeMs}`,
      );
      assert.ok(t.unetMs > 0 && t.unetMs <= t.loopMs && t.loopMs <= t.denoiseMs, JSON.stringify(t));
      assert.ok(t.decodeMs > 0);
    });

    test('the same request gives identical bytes; another seed gives a different image', async () => {
      const [a, b, c] = [await rgb(version), await rgb(version), await rgb(version, { seed: 1235 })];
      assert.ok(sameBytes(a, b), 'images differ');
      assert.ok(!sameBytes(a, c), 'another seed gives the same image');
    });

    test('image i of a batch equals a single run at seed + i (wrapping), guided or not', async () => {
      const seed = 0xffff_fffe;
      for (const overrides of [{}, { negativePrompt: '', guidanceScale: 1 }] as Partial<GenerateRequest>[]) {
        const batch = await models[version].generate(request({ ...overrides, numImages: 3, seed }));
        assert.equal(batch.images.length, 3);
        assert.equal(batch.timings.unetCalls, 4, 'a batch is one UNet run per step');
        assert.equal(batch.timings.priorCalls, PRIOR_STEPS, 'a batch is one prior run per prior step');
        for (let i = 0; i < 3; i++) {
          const single = await rgb(version, { ...overrides, seed: (seed + i) >>> 0 });
          assert.ok(
            sameBytes(batch.images[i].rgb, single),
            `${JSON.stringify(overrides)}: image ${i} differs`,
          );
        }
        assert.ok(!sameBytes(batch.images[0].rgb, batch.images[2].rgb), 'batch images are identical');
      }
    });

    test('the negative prompt reaches both stages: the prior’s uncond rows and the decoder’s', async () => {
      const zero = await zeroImageEmbeds(version);
      const withNegative = await spied(() => models[version].generate(request({ negativePrompt: 'blurry' })));
      const without = await spied(() => models[version].generate(request({ negativePrompt: '' })));
      const a = withNegative.runs.first;
      const b = without.runs.first;
      // Prior, CFG batch [uncond; cond]. With a negative prompt the rows are [n, n; p, n] (the
      // negative also gets its own image embedding); without one [""; p].
      assert.deepEqual(a.prior?.proj_embedding.dims.slice(0, 1), [4]);
      assert.deepEqual(b.prior?.proj_embedding.dims.slice(0, 1), [2]);
      const negative = row(a.prior?.proj_embedding, 0);
      assert.ok(sameBytes(row(a.prior?.proj_embedding, 1), negative));
      assert.ok(sameBytes(row(a.prior?.proj_embedding, 3), negative));
      assert.ok(
        sameBytes(row(a.prior?.proj_embedding, 2), row(b.prior?.proj_embedding, 1)),
        'prompt rows differ',
      );
      assert.ok(
        !sameBytes(negative, row(b.prior?.proj_embedding, 0)),
        'the prior’s uncond ignores the negative',
      );
      assert.ok(!sameBytes(row(a.prior?.encoder_hidden_states, 0), row(b.prior?.encoder_hidden_states, 0)));
      // Decoder, [uncond; cond]: the negative image embedding is the prior's negative row, or the
      // zero-image embedding without a negative prompt.
      assert.ok(
        sameBytes(row(b.unet?.image_embeds, 0), zero),
        'uncond image embedding is not the zero image’s',
      );
      assert.ok(!sameBytes(row(a.unet?.image_embeds, 0), zero), 'the negative’s image embedding is unused');
      if (version === '2.1') {
        // The decoder's own text encoder reads [prompt, negative prompt].
        assert.ok(!sameBytes(row(a.text?.input_ids, 1), row(b.text?.input_ids, 1)));
        for (const input of ['encoder_hidden_states', 'text_embeds']) {
          assert.ok(!sameBytes(row(a.unet?.[input], 0), row(b.unet?.[input], 0)), `${input}: uncond row`);
          assert.ok(sameBytes(row(a.unet?.[input], 1), row(b.unet?.[input], 1)), `${input}: cond row`);
        }
      } else {
        assert.equal(withNegative.runs.count.text, 0, '2.2 has no decoder text encoder');
        assert.deepEqual(Object.keys(a.unet ?? {}).sort(), ['image_embeds', 'sample', 'timestep']);
      }
      // And on the images: guided, and through the prior alone when the decoder runs unguided.
      const image = (run: typeof withNegative) => run.result?.images[0]?.rgb ?? new Uint8Array();
      assert.ok(!sameBytes(image(withNegative), image(without)), 'the negative prompt changes nothing');
      assert.ok(!sameBytes(await rgb(version, { negativePrompt: 'dark' }), image(withNegative)));
      assert.ok(
        !sameBytes(
          await rgb(version, { negativePrompt: 'blurry', guidanceScale: 1 }),
          await rgb(version, { negativePrompt: '', guidanceScale: 1 }),
        ),
        'unguided, the negative prompt no longer reaches the prior',
      );
    });

    test('guidance ≤ 1 runs the decoder without CFG and differs from a guided run', async () => {
      const unguided = await spied(() =>
        models[version].generate(request({ numImages: 2, guidanceScale: 1 })),
      );
      const guided = await spied(() => models[version].generate(request({ numImages: 2, guidanceScale: 4 })));
      assert.deepEqual(unguided.runs.first.unet?.sample.dims, [2, 4, 8, 16], 'one UNet row per image');
      assert.deepEqual(guided.runs.first.unet?.sample.dims, [4, 4, 8, 16], 'uncond and cond rows');
      // The prior keeps its own guidance (4) either way.
      assert.deepEqual(unguided.runs.first.prior?.hidden_states.dims, [8, 32]);
      const [u, g] = [unguided.result?.images, guided.result?.images];
      assert.ok(u && g);
      assert.equal(u.length, 2);
      assert.ok(new Set(u[0].rgb).size > 50, 'the unguided image is a flat colour');
      assert.ok(!sameBytes(u[0].rgb, g[0].rgb), 'guidance changes nothing');
      // Below 1 is no CFG too, so the scale is not used at all.
      assert.ok(
        sameBytes(await rgb(version, { guidanceScale: 0.5 }), await rgb(version, { guidanceScale: 1 })),
      );
      assert.ok(
        sameBytes(await rgb(version, { guidanceScale: 0 }), await rgb(version, { guidanceScale: 1 })),
      );
      assert.ok(
        !sameBytes(await rgb(version, { guidanceScale: 2 }), await rgb(version, { guidanceScale: 4 })),
      );
    });

    test(
      version === '2.1'
        ? 'the prompt reaches the image through both encoders (CLIP for the prior, XLM-R for the decoder)'
        : 'the prompt reaches the image through the prior',
      async () => {
        const cat = await spied(() => models[version].generate(request({ prompt: 'a red cat on the roof' })));
        const horse = await spied(() =>
          models[version].generate(request({ prompt: 'a white horse in the snow' })),
        );
        const [a, b] = [cat.runs.first, horse.runs.first];
        const [catImage, horseImage] = [cat.result?.images[0].rgb, horse.result?.images[0].rgb];
        assert.ok(catImage && horseImage);
        assert.ok(!sameBytes(catImage, horseImage), 'two prompts give the same image');
        // The prior's cond row for the prompt (rows [n, n; p, n] with the negative prompt) reads
        // it; its output is the decoder's cond image embedding (rows [negative; cond]).
        assert.ok(!sameBytes(row(a.prior?.proj_embedding, 2), row(b.prior?.proj_embedding, 2)));
        assert.ok(sameBytes(row(a.prior?.proj_embedding, 3), row(b.prior?.proj_embedding, 3)));
        assert.ok(
          sameBytes(row(a.prior?.proj_embedding, 0), row(b.prior?.proj_embedding, 0)),
          'uncond rows differ',
        );
        assert.ok(!sameBytes(row(a.unet?.image_embeds, 1), row(b.unet?.image_embeds, 1)));
        // The CLIP tokenizer lower-cases; XLM-R does not. So a change of case reaches 2.1's decoder
        // text alone (same prior feeds, same image embedding) and changes nothing in 2.2.
        const upper = await spied(() =>
          models[version].generate(request({ prompt: 'A Red Cat On The Roof' })),
        );
        const c = upper.runs.first;
        assert.ok(sameBytes(row(c.priorText?.input_ids, 0), row(a.priorText?.input_ids, 0)));
        assert.ok(sameBytes(row(c.unet?.image_embeds, 1), row(a.unet?.image_embeds, 1)));
        const upperImage = upper.result?.images[0].rgb;
        assert.ok(upperImage);
        if (version === '2.1') {
          for (const input of ['encoder_hidden_states', 'text_embeds']) {
            assert.ok(!sameBytes(row(a.unet?.[input], 1), row(b.unet?.[input], 1)), `${input}: prompts`);
            assert.ok(!sameBytes(row(a.unet?.[input], 1), row(c.unet?.[input], 1)), `${input}: case`);
          }
          assert.ok(!sameBytes(catImage, upperImage), 'the decoder’s text encoder changes nothing');
          // Russian goes into both encoders untranslated and is its own image.
          assert.ok(!sameBytes(await rgb(version, { prompt: 'красный кот на крыше' }), catImage));
        } else {
          assert.ok(sameBytes(catImage, upperImage), '2.2 read the prompt somewhere besides the prior');
        }
      },
    );

    test('a prompt over 77 tokens is reported as truncated', async () => {
      const result = await models[version].generate(request({ prompt: 'cat '.repeat(90), steps: 1 }));
      assert.equal(result.promptTruncated, true);
    });

    test('aborting from onStep after step 2 stops the decoder and rejects with the signal’s reason', async () => {
      const before = await rgb(version, { steps: 6 });
      const controller = new AbortController();
      const seen: number[] = [];
      const { runs, error } = await spied(() =>
        models[version].generate(
          request({
            steps: 6,
            signal: controller.signal,
            onStep: (step) => {
              seen.push(step);
              if (step === 2) controller.abort(new Error('cancelled by user'));
            },
          }),
        ),
      );
      assert.ok(error instanceof Error && error.message === 'cancelled by user', `rejected with ${error}`);
      assert.deepEqual(seen, [1, 2]);
      assert.equal(runs.count.unet, 2, 'UNet runs after the abort');
      assert.equal(runs.count.movq, 0, 'decoded after the abort');
      // Nothing of the cancelled run is left behind.
      assert.ok(sameBytes(await rgb(version, { steps: 6 }), before), 'the next run differs');
    });

    test('an abort during the prior stops it there; an aborted signal rejects before any run', async () => {
      const controller = new AbortController();
      const reason = new Error('cancelled during the prior');
      let steps = 0;
      const { runs, error } = await spied(
        () => models[version].generate(request({ signal: controller.signal, onStep: () => steps++ })),
        (stage, count) => {
          if (stage === 'prior' && count === 3) controller.abort(reason);
        },
      );
      assert.equal(error, reason);
      assert.deepEqual([runs.count.prior, runs.count.unet, steps], [3, 0, 0]);

      const early = await spied(() =>
        models[version].generate(request({ signal: AbortSignal.abort(), onStep: () => steps++ })),
      );
      assert.ok(
        early.error instanceof Error && early.error.name === 'AbortError',
        `rejected with ${early.error}`,
      );
      assert.equal(
        Object.values(early.runs.count).reduce((a, b) => a + b),
        0,
        'a session ran',
      );
      assert.equal(steps, 0);
    });

    test('bad sizes and settings are GenerationInputError naming the field', async () => {
      const other = version === '2.1' ? 'ddpm' : 'ddim';
      const cases: [Partial<GenerateRequest>, string, RegExp][] = [
        [{ width: 100 }, 'width', /width must be a positive multiple of 64 up to 2048, got 100/],
        [{ width: 96 }, 'width', /multiple of 64/],
        [{ height: 0 }, 'height', /height must be a positive multiple of 64/],
        [{ height: 4096 }, 'height', /up to 2048/],
        [{ steps: 0 }, 'steps', /steps must be an integer from 1 to 1000, got 0/],
        [{ steps: 2.5 }, 'steps', /steps/],
        [{ steps: 1001 }, 'steps', /from 1 to 1000/],
        [{ numImages: 0 }, 'numImages', /numImages/],
        [{ seed: -1 }, 'seed', /seed/],
        [{ seed: 2 ** 32 }, 'seed', /seed/],
        [{ guidanceScale: Number.NaN }, 'guidanceScale', /guidanceScale/],
        [
          { scheduler: 'euler' },
          'scheduler',
          new RegExp(`Kandinsky ${version} runs its own ${own} sampler, got euler`),
        ],
        [
          { scheduler: other as SchedulerChoice },
          'scheduler',
          new RegExp(`runs its own ${own} sampler, got ${other}`),
        ],
        [{ karras: true }, 'karras', new RegExp(`karras does not apply to ${own}`)],
        [{ scheduler: own as SchedulerChoice, karras: true }, 'karras', /karras/],
      ];
      const { runs, error } = await spied(async () => {
        for (const [overrides, field, message] of cases) {
          await assert.rejects(models[version].generate(request(overrides)), (error: unknown) => {
            assert.ok(error instanceof GenerationInputError, `${field}: ${error}`);
            assert.equal(error.code, 'invalid_generation_input');
            assert.equal(error.field, field);
            assert.match(error.message, message);
            return true;
          });
        }
      });
      if (error) throw error;
      assert.equal(
        Object.values(runs.count).reduce((a, b) => a + b),
        0,
        'a session ran for a bad request',
      );
      // karras: false is fine.
      assert.equal((await models[version].generate(request({ karras: false, steps: 1 }))).scheduler, own);
    });
  });
}

// --- Broken model folders -----------------------------------------------------------------------

/** A fresh copy of a version's demo folder to break. */
async function copy(version: KandinskyVersion): Promise<string> {
  const dir = join(root, `broken-${version}-${copies++}`);
  await cp(dirs[version], dir, { recursive: true });
  return dir;
}

async function assertLoadError(dir: string, code: string, file: string, pattern: RegExp): Promise<void> {
  await assert.rejects(loadTextToImage(dir, { provider: 'cpu' }), (error: unknown) => {
    assert.ok(error instanceof ModelLoadError, `expected ModelLoadError, got ${error}`);
    assert.equal(error.code, code);
    assert.equal(error.file, file);
    assert.equal(error.dir, dir);
    assert.match(error.message, pattern);
    return true;
  });
}

const escapeRegExp = (file: string) => file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

for (const version of VERSIONS) {
  describe(`Kandinsky ${version} model errors`, () => {
    const missing: string[] = [FILES.unet, FILES.clipStats, FILES.priorScheduler, FILES.movq];
    if (version === '2.1') missing.push(`${FILES.tokenizer}/tokenizer.json`, FILES.textEncoder);

    for (const file of missing) {
      test(`a missing ${file} names the file and the Kandinsky layout`, async () => {
        const dir = await copy(version);
        await rm(join(dir, file));
        await assertLoadError(
          dir,
          'model_missing_file',
          file,
          new RegExp(`^${escapeRegExp(file)}: file does not exist .*Kandinsky ONNX layout`),
        );
      });
    }

    const json: string[] = [FILES.clipStats, FILES.zeroImageEmbeds, FILES.scheduler, FILES.priorScheduler];
    if (version === '2.1') json.push(`${FILES.tokenizer}/tokenizer.json`);
    for (const file of json) {
      test(`a corrupt ${file} is model_corrupt naming it`, async () => {
        const dir = await copy(version);
        await writeFile(join(dir, file), '{ "clip_mean": [0.1, ');
        await assertLoadError(
          dir,
          'model_corrupt',
          file,
          new RegExp(`^${escapeRegExp(file)}: not valid JSON`),
        );
      });
    }

    test('a corrupt unet/model.onnx is model_corrupt', async () => {
      const dir = await copy(version);
      await writeFile(join(dir, FILES.unet), Buffer.alloc(4096, 0xa7));
      await assertLoadError(dir, 'model_corrupt', FILES.unet, /^unet\/model\.onnx: not a valid ONNX model/);
    });

    test(`a UNet of the other version fails at load, saying what was expected`, async () => {
      const dir = await copy(version);
      const otherVersion = version === '2.1' ? '2.2' : '2.1';
      await copyFile(join(dirs[otherVersion], FILES.unet), join(dir, FILES.unet));
      await assertLoadError(
        dir,
        'model_invalid',
        FILES.unet,
        version === '2.1'
          ? /^unet\/model\.onnx: expected a tensor input "encoder_hidden_states", found inputs: sample, timestep, image_embeds$/
          : /^unet\/model\.onnx: expected a Kandinsky 2\.2 UNet with the inputs sample, timestep, image_embeds only, found also: encoder_hidden_states, text_embeds/,
      );
    });

    test('clip_stats or a zero embedding of the wrong width: the parts come from different models', async () => {
      const wide = Array.from({ length: 48 }, (_, i) => i / 100);
      const dir = await copy(version);
      await writeFile(join(dir, FILES.clipStats), JSON.stringify({ clip_mean: wide, clip_std: wide }));
      await assertLoadError(
        dir,
        'model_invalid',
        FILES.clipStats,
        /^prior_prior\/clip_stats\.json: clip_mean has width 48 but the prior's hidden_states has 32: the parts come from different models$/,
      );
      const std = await copy(version);
      const stats = JSON.parse(await readFile(join(std, FILES.clipStats), 'utf8'));
      await writeFile(join(std, FILES.clipStats), JSON.stringify({ ...stats, clip_std: wide }));
      await assertLoadError(
        std,
        'model_invalid',
        FILES.clipStats,
        /clip_std has width 48 .*different models/,
      );
      const zero = await copy(version);
      await writeFile(join(zero, FILES.zeroImageEmbeds), JSON.stringify([wide.slice(0, 16)]));
      await assertLoadError(
        zero,
        'model_invalid',
        FILES.zeroImageEmbeds,
        /the zero image embedding has width 16 but .* has 32: the parts come from different models/,
      );
    });

    test('clip_stats without clip_std is model_invalid naming the key', async () => {
      const dir = await copy(version);
      const stats = JSON.parse(await readFile(join(dir, FILES.clipStats), 'utf8'));
      await writeFile(join(dir, FILES.clipStats), JSON.stringify({ clip_mean: stats.clip_mean }));
      await assertLoadError(
        dir,
        'model_invalid',
        FILES.clipStats,
        /"clip_std" must be a non-empty array of numbers/,
      );
    });
  });
}
