// Kandinsky 2.1 and 2.2 text-to-image on ONNX Runtime, as diffusers' combined pipelines run them
// (pipelines/kandinsky/pipeline_kandinsky_{prior,combined}.py and the 2.2 counterparts):
//   prior: CLIP text → image embedding, 25 UnCLIP steps with guidance 4, un-normalised with the
//          prior's clip statistics; the negative prompt runs as a second prior row, and without
//          one the negative image embedding is the image encoder's embedding of a zero image;
//   decoder: 2.1 conditions its UNet on the XLM-R text encoder and the image embeddings (DDIM),
//          2.2 on the image embeddings only (DDPM); guidance on ε, the variance channels dropped;
//   MoVQ: latents of ceil(side/64)·8 decoded 8× up, no scaling factor.
// Sessions are opened once; each generate() allocates its buffers once and runs both loops in
// place. Facts and sources: ../shared/notes/kandinsky.md.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import ort from 'onnxruntime-node';
import { type ClipTokenizer, loadClipTokenizer } from '../clip-tokenizer.ts';
import { GenerationInputError, ModelLoadError } from '../model-errors.ts';
import { openSessions, requireTensor, type TensorMetadata } from '../onnx-session.ts';
import { batchNoiseOver, batchStreams } from '../random.ts';
import { checkBatch, checkSides, checkSteps } from '../request-checks.ts';
import { chwToRgb } from '../rgb.ts';
import type { Scheduler, SchedulerConfig } from '../schedulers/common.ts';
import { ddimScheduler } from '../schedulers/ddim.ts';
import { ddpmScheduler } from '../schedulers/ddpm.ts';
import { unclipScheduler } from '../schedulers/unclip.ts';
import type {
  FamilyLoadOptions,
  GeneratedImage,
  GenerateRequest,
  GenerateResult,
  TextToImage,
} from '../text-to-image.ts';
import { KANDINSKY_DEFAULTS } from './capabilities.ts';
import {
  checkLayout,
  KANDINSKY_FILES as FILES,
  KANDINSKY_LAYOUT,
  type KandinskyVersion,
  kandinskyVersion,
  loadSchedulerConfigAt,
} from './layout.ts';
import { loadXlmrTokenizer, type XlmrTokenizer } from './xlmr-tokenizer.ts';

/** The MoVQ's upsampling, and the side multiple that needs no crop (ceil(side/64)·8 latents). */
const MOVQ_FACTOR = 8;
const SIDE_MULTIPLE = 64;
const MAX_SIDE = 2048;
const LATENT_CHANNELS = 4;

async function readVector(dir: string, file: string, key?: string): Promise<Float32Array> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(join(dir, file), 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ModelLoadError(
        'model_missing_file',
        dir,
        file,
        `file does not exist (expected ${KANDINSKY_LAYOUT})`,
      );
    }
    throw new ModelLoadError('model_corrupt', dir, file, 'not valid JSON', { cause: error });
  }
  const value = key === undefined ? parsed : (parsed as Record<string, unknown> | null)?.[key];
  // An exporter may keep the leading batch axis ([[...]]).
  const flat = Array.isArray(value) && value.length === 1 && Array.isArray(value[0]) ? value[0] : value;
  if (
    !Array.isArray(flat) ||
    flat.length === 0 ||
    !flat.every((v) => typeof v === 'number' && Number.isFinite(v))
  ) {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      file,
      `${key ? `"${key}" ` : ''}must be a non-empty array of numbers`,
    );
  }
  return Float32Array.from(flat as number[]);
}

function validate(request: GenerateRequest, version: KandinskyVersion, maxSteps: number): void {
  const own = version === '2.1' ? 'ddim' : 'ddpm';
  if (request.scheduler !== undefined && request.scheduler !== own) {
    throw new GenerationInputError(
      'scheduler',
      `Kandinsky ${version} runs its own ${own} sampler, got ${String(request.scheduler)}`,
    );
  }
  if (request.karras) throw new GenerationInputError('karras', `karras does not apply to ${own}`);
  checkSides(request, SIDE_MULTIPLE, MAX_SIDE);
  checkSteps(request.steps, maxSteps);
  checkBatch(request);
}

/** A fixed width the sessions declare, or undefined when the axis is symbolic. */
const fixed = (meta: TensorMetadata, axis: number) => {
  const dim = meta.shape[axis];
  return typeof dim === 'number' ? dim : undefined;
};

export async function loadKandinsky(dir: string, options: FamilyLoadOptions): Promise<TextToImage> {
  const version = await kandinskyVersion(dir);
  await checkLayout(dir, version);
  const [priorSchedulerConfig, schedulerConfig, clipMean, clipStd, zeroEmbeds, priorTokenizer, tokenizer] =
    await Promise.all([
      loadSchedulerConfigAt(dir, FILES.priorScheduler),
      loadSchedulerConfigAt(dir, FILES.scheduler),
      readVector(dir, FILES.clipStats, 'clip_mean'),
      readVector(dir, FILES.clipStats, 'clip_std'),
      readVector(dir, FILES.zeroImageEmbeds),
      loadClipTokenizer(join(dir, FILES.priorTokenizer), dir),
      version === '2.1' ? loadXlmrTokenizer(dir, FILES.tokenizer) : Promise.resolve(undefined),
    ]);
  const files: string[] = [FILES.priorTextEncoder, FILES.prior, FILES.unet, FILES.movq];
  if (version === '2.1') files.push(FILES.textEncoder);
  const sessions = await openSessions(dir, files, options.provider, KANDINSKY_LAYOUT);
  try {
    return createPipeline({
      dir,
      version,
      family:
        options.family ?? (version === '2.1' ? 'KandinskyCombinedPipeline' : 'KandinskyV22CombinedPipeline'),
      provider: options.provider,
      priorSchedulerConfig,
      schedulerConfig,
      clipMean,
      clipStd,
      zeroEmbeds,
      priorTokenizer,
      tokenizer,
      sessions,
    });
  } catch (error) {
    await Promise.allSettled(sessions.map((session) => session.release()));
    throw error;
  }
}

interface PipelineParts {
  dir: string;
  version: KandinskyVersion;
  family: string;
  provider: FamilyLoadOptions['provider'];
  priorSchedulerConfig: SchedulerConfig;
  schedulerConfig: SchedulerConfig;
  clipMean: Float32Array;
  clipStd: Float32Array;
  zeroEmbeds: Float32Array;
  priorTokenizer: ClipTokenizer;
  tokenizer: XlmrTokenizer | undefined;
  sessions: InferenceSession[];
}

function createPipeline(parts: PipelineParts): TextToImage {
  const { dir, version, priorSchedulerConfig, schedulerConfig, clipMean, clipStd, zeroEmbeds } = parts;
  const { priorTokenizer, tokenizer } = parts;
  const [priorTextEncoder, prior, unet, movq, textEncoder] = parts.sessions;

  // Signatures checked at load, so a wrong export fails with what was expected, not mid-job.
  const t = (
    session: InferenceSession,
    file: string,
    kind: 'input' | 'output',
    name: string,
    types = ['float32'],
  ) => requireTensor(session, dir, file, kind, name, types);
  const priorIdsType = t(priorTextEncoder, FILES.priorTextEncoder, 'input', 'input_ids', [
    'int64',
    'int32',
  ]).type;
  t(priorTextEncoder, FILES.priorTextEncoder, 'output', 'text_embeds');
  t(priorTextEncoder, FILES.priorTextEncoder, 'output', 'last_hidden_state');
  const priorHidden = t(prior, FILES.prior, 'input', 'hidden_states');
  t(prior, FILES.prior, 'input', 'timestep');
  t(prior, FILES.prior, 'input', 'proj_embedding');
  t(prior, FILES.prior, 'input', 'encoder_hidden_states');
  t(prior, FILES.prior, 'input', 'attention_mask', ['bool']);
  t(prior, FILES.prior, 'output', 'predicted_image_embedding');
  t(unet, FILES.unet, 'input', 'sample');
  t(unet, FILES.unet, 'input', 'timestep');
  const unetImageEmbeds = t(unet, FILES.unet, 'input', 'image_embeds');
  const unetOut = t(unet, FILES.unet, 'output', 'out_sample');
  if (version === '2.1' && textEncoder) {
    t(unet, FILES.unet, 'input', 'encoder_hidden_states');
    t(unet, FILES.unet, 'input', 'text_embeds');
    t(textEncoder, FILES.textEncoder, 'input', 'input_ids', ['int64']);
    t(textEncoder, FILES.textEncoder, 'input', 'attention_mask', ['int64']);
    t(textEncoder, FILES.textEncoder, 'output', 'text_embeds');
    t(textEncoder, FILES.textEncoder, 'output', 'last_hidden_state');
  } else {
    // 2.2 feeds the UNet nothing else: a UNet that needs more (2.1's) would only fail mid-job.
    const fed = ['sample', 'timestep', 'image_embeds'];
    const extra = unet.inputNames.filter((name) => !fed.includes(name));
    if (extra.length > 0) {
      throw new ModelLoadError(
        'model_invalid',
        dir,
        FILES.unet,
        `expected a Kandinsky 2.2 UNet with the inputs ${fed.join(', ')} only, found also: ${extra.join(', ')} (a 2.1 UNet?)`,
      );
    }
  }
  t(movq, FILES.movq, 'input', 'latent_sample');
  t(movq, FILES.movq, 'output', 'sample');

  // One embedding width D everywhere: the prior's, the clip statistics', the zero embedding's and
  // the UNet's image embeddings must agree, or the parts come from different models. Measured
  // against the prior's own width when the export fixes it, so the stray part is the one named.
  const priorWidth = fixed(priorHidden, 1);
  const D = priorWidth ?? clipMean.length;
  const reference = priorWidth === undefined ? 'clip_mean' : "the prior's hidden_states";
  for (const [what, width, file] of [
    ['clip_mean', clipMean.length, FILES.clipStats],
    ['clip_std', clipStd.length, FILES.clipStats],
    ['the zero image embedding', zeroEmbeds.length, FILES.zeroImageEmbeds],
    ['image_embeds', fixed(unetImageEmbeds, 1), FILES.unet],
  ] as const) {
    if (width !== undefined && width !== D) {
      throw new ModelLoadError(
        'model_invalid',
        dir,
        file,
        `${what} has width ${width} but ${reference} has ${D}: the parts come from different models`,
      );
    }
  }
  const outChannels = fixed(unetOut, 1);
  if (outChannels !== undefined && outChannels !== 2 * LATENT_CHANNELS) {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      FILES.unet,
      `out_sample has ${outChannels} channels, expected ${2 * LATENT_CHANNELS} (ε and the learned variance)`,
    );
  }
  const maxSteps = schedulerConfig.num_train_timesteps ?? 1000;
  const scheduler = version === '2.1' ? 'ddim' : 'ddpm';
  let released = false;

  const idsTensor = (type: string, rows: number[][]) => {
    const flat = rows.flat();
    const data = type === 'int64' ? BigInt64Array.from(flat, BigInt) : Int32Array.from(flat);
    return new ort.Tensor(type as 'int64', data, [rows.length, rows[0]?.length ?? 0]);
  };

  /** CLIP text → (text_embeds [n,D], last_hidden_state [n,77,D]) for distinct prompts. */
  async function priorText(prompts: string[]) {
    const tokens = prompts.map((p) => priorTokenizer.encode(p));
    const out = await priorTextEncoder.run({
      input_ids: idsTensor(
        priorIdsType,
        tokens.map((x) => x.ids),
      ),
    });
    const hidden = out.last_hidden_state as Tensor;
    return {
      embeds: (out.text_embeds as Tensor).data as Float32Array,
      hidden: hidden.data as Float32Array,
      seq: hidden.dims[1] as number,
      lengths: tokens.map((x) => x.length),
      truncated: tokens.some((x) => x.truncated),
    };
  }

  /**
   * The prior: image embeddings for each image's prompt row and, with a negative prompt, its
   * negative row (un-normalised), laid out [numImages, rowsPerImage, D].
   */
  async function runPrior(
    request: GenerateRequest,
    draw: ReturnType<typeof batchStreams>,
    timings: { priorMs: number; priorCalls: number; priorLoopMs: number },
  ) {
    const { numImages, negativePrompt } = request;
    const withNegative = negativePrompt.trim() !== '';
    const perImageRows = withNegative ? 2 : 1;
    const rows = numImages * perImageRows;
    const guidance = KANDINSKY_DEFAULTS.priorGuidance;
    // Row texts: the prompt (and the negative prompt) conditioned, the negative (or "") unconditioned.
    const text = await priorText(withNegative ? [request.prompt, negativePrompt] : [request.prompt, '']);
    // Text 0 is the prompt, text 1 the negative prompt or "": every unconditioned row reads 1.
    const cond = (r: number) => (r === 0 ? 0 : 1);
    const uncond = 1;
    const seq = text.seq;
    const all = 2 * rows;
    const projection = new Float32Array(all * D);
    const context = new Float32Array(all * seq * D);
    const mask = new Uint8Array(all * seq);
    // Batch layout [uncond rows; cond rows], each half in (image, row) order.
    for (let half = 0; half < 2; half++) {
      for (let i = 0; i < numImages; i++) {
        for (let r = 0; r < perImageRows; r++) {
          const row = half * rows + i * perImageRows + r;
          const source = half === 0 ? uncond : cond(r);
          projection.set(text.embeds.subarray(source * D, (source + 1) * D), row * D);
          context.set(text.hidden.subarray(source * seq * D, (source + 1) * seq * D), row * seq * D);
          mask.fill(1, row * seq, row * seq + text.lengths[source]);
        }
      }
    }
    // Initial embeddings first, then each noisy step's values, from each image's own stream.
    const priorNoise = batchNoiseOver(draw, perImageRows * D);
    const x = new Float32Array(rows * D);
    priorNoise.fill(x);
    const schedule = unclipScheduler(priorSchedulerConfig, KANDINSKY_DEFAULTS.priorSteps, {
      noise: priorNoise.fill,
    });
    const input = new Float32Array(all * D);
    const output = new Float32Array(all * D);
    const timestep = new Float32Array(all);
    const feeds = {
      hidden_states: new ort.Tensor('float32', input, [all, D]),
      timestep: new ort.Tensor('float32', timestep, [all]),
      proj_embedding: new ort.Tensor('float32', projection, [all, D]),
      encoder_hidden_states: new ort.Tensor('float32', context, [all, seq, D]),
      attention_mask: new ort.Tensor('bool', mask, [all, seq]),
    };
    const fetches = { predicted_image_embedding: new ort.Tensor('float32', output, [all, D]) };
    const n = rows * D;
    const guided = output.subarray(0, n);
    const loopStart = performance.now();
    for (let step = 0; step < schedule.timesteps.length; step++) {
      input.set(x);
      input.copyWithin(n, 0, n);
      timestep.fill(schedule.timesteps[step]);
      const start = performance.now();
      await prior.run(feeds, fetches);
      timings.priorMs += performance.now() - start;
      timings.priorCalls++;
      for (let k = 0; k < n; k++) {
        const u = output[k];
        output[k] = u + guidance * (output[n + k] - u);
      }
      schedule.step(step, x, guided);
      request.signal?.throwIfAborted();
    }
    timings.priorLoopMs += performance.now() - loopStart;
    for (let k = 0; k < n; k++) x[k] = x[k] * clipStd[k % D] + clipMean[k % D];
    return { embeds: x, perImageRows, truncated: text.truncated };
  }

  /** 2.1's decoder text: (text_embeds, hidden states) of the prompt and of the negative prompt. */
  async function decoderText(request: GenerateRequest) {
    if (!tokenizer || !textEncoder) return undefined;
    const tokens = [tokenizer.encode(request.prompt), tokenizer.encode(request.negativePrompt)];
    const out = await textEncoder.run({
      input_ids: idsTensor(
        'int64',
        tokens.map((x) => x.ids),
      ),
      attention_mask: idsTensor(
        'int64',
        tokens.map((x) => x.mask),
      ),
    });
    const hidden = out.last_hidden_state as Tensor;
    return {
      embeds: (out.text_embeds as Tensor).data as Float32Array,
      hidden: hidden.data as Float32Array,
      seq: hidden.dims[1] as number,
      width: hidden.dims[2] as number,
      truncated: tokens[0]?.truncated ?? false,
    };
  }

  function decoderScheduler(steps: number, noise: (out: Float32Array) => void): Scheduler {
    return version === '2.1'
      ? ddimScheduler(schedulerConfig, steps)
      : ddpmScheduler(schedulerConfig, steps, { noise });
  }

  async function generate(request: GenerateRequest): Promise<GenerateResult> {
    if (released) throw new Error('the model was released');
    validate(request, version, maxSteps);
    const { signal, onStep, numImages, steps, guidanceScale } = request;
    signal?.throwIfAborted();
    // Each image's own stream: the prior's values first, then the decoder's (random.ts).
    const draw = batchStreams(request.seed, numImages);

    const encodeStart = performance.now();
    const priorTimings = { priorMs: 0, priorCalls: 0, priorLoopMs: 0 };
    const embeddings = await runPrior(request, draw, priorTimings);
    const text = await decoderText(request);
    const encodeMs = performance.now() - encodeStart;

    const denoiseStart = performance.now();
    const guided = guidanceScale > 1;
    const rows = guided ? 2 * numImages : numImages;
    const h = (Math.ceil(request.height / SIDE_MULTIPLE) * SIDE_MULTIPLE) / MOVQ_FACTOR;
    const w = (Math.ceil(request.width / SIDE_MULTIPLE) * SIDE_MULTIPLE) / MOVQ_FACTOR;
    const perImage = LATENT_CHANNELS * h * w;
    // Image embeddings per row: [negative × numImages; positive × numImages] with guidance.
    const imageEmbeds = new Float32Array(rows * D);
    for (let i = 0; i < numImages; i++) {
      const own = embeddings.embeds.subarray(
        i * embeddings.perImageRows * D,
        (i * embeddings.perImageRows + 1) * D,
      );
      const negative =
        embeddings.perImageRows === 2
          ? embeddings.embeds.subarray((i * 2 + 1) * D, (i * 2 + 2) * D)
          : zeroEmbeds;
      if (guided) {
        imageEmbeds.set(negative, i * D);
        imageEmbeds.set(own, (numImages + i) * D);
      } else imageEmbeds.set(own, i * D);
    }
    const noise = batchNoiseOver(draw, perImage);
    const schedule = decoderScheduler(steps, noise.fill);
    const latents = new Float32Array(numImages * perImage);
    noise.fill(latents);
    for (let k = 0; k < latents.length; k++) latents[k] *= schedule.initNoiseSigma;
    const n = latents.length;
    const modelInput = new Float32Array(rows * perImage);
    const out = new Float32Array(rows * 2 * perImage);
    const eps = new Float32Array(n);
    const timestep = new Float32Array(rows);
    const feeds: Record<string, Tensor> = {
      sample: new ort.Tensor('float32', modelInput, [rows, LATENT_CHANNELS, h, w]),
      timestep: new ort.Tensor('float32', timestep, [rows]),
      image_embeds: new ort.Tensor('float32', imageEmbeds, [rows, D]),
    };
    if (text) {
      // [uncond (negative prompt) × numImages; cond (prompt) × numImages], or cond only.
      const context = new Float32Array(rows * text.seq * text.width);
      const textEmbeds = new Float32Array(rows * D);
      const rowSize = text.seq * text.width;
      for (let r = 0; r < rows; r++) {
        const source = guided && r < numImages ? 1 : 0;
        context.set(text.hidden.subarray(source * rowSize, (source + 1) * rowSize), r * rowSize);
        textEmbeds.set(text.embeds.subarray(source * D, (source + 1) * D), r * D);
      }
      feeds.encoder_hidden_states = new ort.Tensor('float32', context, [rows, text.seq, text.width]);
      feeds.text_embeds = new ort.Tensor('float32', textEmbeds, [rows, D]);
    }
    const fetches = { out_sample: new ort.Tensor('float32', out, [rows, 2 * LATENT_CHANNELS, h, w]) };
    let unetMs = 0;
    let unetCalls = 0;
    const loopStart = performance.now();
    for (let step = 0; step < steps; step++) {
      const scale = schedule.inputScale(step);
      if (scale === 1) modelInput.set(latents);
      else for (let k = 0; k < n; k++) modelInput[k] = latents[k] * scale;
      if (guided) modelInput.copyWithin(n, 0, n);
      timestep.fill(schedule.timesteps[step]);
      const runStart = performance.now();
      await unet.run(feeds, fetches);
      unetMs += performance.now() - runStart;
      unetCalls++;
      // ε is each row's first 4 channels; the learned variance (channels 4–7) is not used by
      // DDIM or by DDPM's fixed_small variance.
      for (let i = 0; i < numImages; i++) {
        const c = ((guided ? numImages : 0) + i) * 2 * perImage;
        const target = i * perImage;
        if (guided) {
          const u = i * 2 * perImage;
          for (let k = 0; k < perImage; k++) {
            const e = out[u + k];
            eps[target + k] = e + guidanceScale * (out[c + k] - e);
          }
        } else eps.set(out.subarray(c, c + perImage), target);
      }
      schedule.step(step, latents, eps);
      onStep?.(step + 1, steps);
      signal?.throwIfAborted();
    }
    const loopMs = performance.now() - loopStart;
    const denoiseMs = performance.now() - denoiseStart;

    // One image at a time through the MoVQ, as the SD pipeline does with its VAE.
    const decodeStart = performance.now();
    const images: GeneratedImage[] = [];
    const movqInput = new Float32Array(perImage);
    const movqTensor = new ort.Tensor('float32', movqInput, [1, LATENT_CHANNELS, h, w]);
    for (let i = 0; i < numImages; i++) {
      movqInput.set(latents.subarray(i * perImage, (i + 1) * perImage));
      const decoded = (await movq.run({ latent_sample: movqTensor })).sample as Tensor;
      const [, channels, height, width] = decoded.dims;
      if (channels !== 3 || height !== request.height || width !== request.width) {
        throw new ModelLoadError(
          'model_invalid',
          dir,
          FILES.movq,
          `decoded [${decoded.dims}] from a [1,4,${h},${w}] latent (expected [1,3,${request.height},${request.width}]: 8× upsampling)`,
        );
      }
      images.push({ rgb: chwToRgb(decoded.data as Float32Array, width, height), width, height });
    }
    const decodeMs = performance.now() - decodeStart;

    return {
      images,
      seed: request.seed,
      scheduler,
      promptTruncated: embeddings.truncated || (text?.truncated ?? false),
      timings: { encodeMs, denoiseMs, decodeMs, loopMs, unetMs, unetCalls, ...priorTimings },
    };
  }

  return {
    info: { family: parts.family, dir, provider: parts.provider, scheduler },
    generate,
    async release() {
      if (released) return;
      released = true;
      await Promise.all(parts.sessions.map((session) => session.release()));
    },
  };
}
