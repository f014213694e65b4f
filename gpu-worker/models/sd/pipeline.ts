// Stable Diffusion 1.x/2.x text-to-image on ONNX Runtime, for diffusers/optimum ONNX exports
// (the OnnxStableDiffusionPipeline layout). Sessions are opened once and reused for every
// generation; each generate() allocates its tensors once and runs the denoising loop in place.

import { join } from 'node:path';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import ort from 'onnxruntime-node';
import { GENERATION_LIMITS } from '../../../shared/generation-contract.ts';
import { type ClipTokenizer, loadClipTokenizer } from '../clip-tokenizer.ts';
import { GenerationInputError, ModelLoadError } from '../model-errors.ts';
import { readModelJson } from '../model-files.ts';
import { openSessions, requireTensor } from '../onnx-session.ts';
import { batchNoise, initialLatents } from '../random.ts';
import { checkBatch, checkSides, checkSteps } from '../request-checks.ts';
import { chwToRgb } from '../rgb.ts';
import type { SchedulerConfig } from '../schedulers/common.ts';
import {
  createScheduler,
  defaultScheduler,
  maxSchedulerSteps,
  type SchedulerSelection,
  schedulerLabel,
  selectScheduler,
  supportsKarras,
} from '../schedulers/registry.ts';
import {
  type ExecutionProvider,
  type FamilyLoadOptions,
  type GeneratedImage,
  type GenerateRequest,
  type GenerateResult,
  KARRAS_SCHEDULER_CHOICES,
  SCHEDULER_CHOICES,
  type TextToImage,
} from '../text-to-image.ts';
import { checkLayout, SD_FILES as FILES, loadSchedulerConfig, SD_LAYOUT } from './layout.ts';

/** SD 1.x's VAE latent scale; SD 2.x uses the same, SDXL differs (and says so in its config). */
const DEFAULT_SCALING_FACTOR = 0.18215;
const VAE_FACTOR = 8;
/** The contract's side limit binds every caller: the API, a job enqueued directly, `easel generate`. */
const MAX_SIDE = GENERATION_LIMITS.side.max;

async function loadScalingFactor(dir: string): Promise<number> {
  let config: unknown;
  try {
    config = await readModelJson(dir, FILES.vaeConfig);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return DEFAULT_SCALING_FACTOR;
    throw error;
  }
  const value = (config as { scaling_factor?: unknown } | null)?.scaling_factor;
  if (value === undefined) return DEFAULT_SCALING_FACTOR;
  if (typeof value !== 'number' || !(value > 0)) {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      FILES.vaeConfig,
      'scaling_factor must be a positive number',
    );
  }
  return value;
}

/** Checks the request and resolves its sampler against the model's scheduler config. */
function validate(request: GenerateRequest, schedulerConfig: SchedulerConfig): SchedulerSelection {
  const { steps } = request;
  if (
    request.scheduler !== undefined &&
    !(SCHEDULER_CHOICES as readonly string[]).includes(request.scheduler)
  ) {
    throw new GenerationInputError(
      'scheduler',
      `scheduler must be one of ${SCHEDULER_CHOICES.join(', ')}, got ${String(request.scheduler)}`,
    );
  }
  if (request.karras !== undefined && typeof request.karras !== 'boolean') {
    throw new GenerationInputError('karras', `karras must be a boolean, got ${String(request.karras)}`);
  }
  const selection = selectScheduler(schedulerConfig, request);
  if (request.karras === true && !supportsKarras(selection.choice)) {
    throw new GenerationInputError(
      'karras',
      `karras applies to ${KARRAS_SCHEDULER_CHOICES.join(', ')}, not ${selection.choice}`,
    );
  }
  const maxSteps = maxSchedulerSteps(schedulerConfig, selection.choice);
  checkSides(request, VAE_FACTOR, MAX_SIDE);
  checkSteps(steps, maxSteps, selection.choice);
  checkBatch(request);
  return selection;
}

export async function loadStableDiffusion(dir: string, options: FamilyLoadOptions): Promise<TextToImage> {
  const { provider } = options;
  const family = options.family ?? 'OnnxStableDiffusionPipeline';

  await checkLayout(dir);
  const [schedulerConfig, scalingFactor, tokenizer] = await Promise.all([
    loadSchedulerConfig(dir),
    loadScalingFactor(dir),
    loadClipTokenizer(join(dir, FILES.tokenizer), dir),
  ]);
  const sessions = await openSessions(
    dir,
    [FILES.textEncoder, FILES.unet, FILES.vaeDecoder],
    provider,
    SD_LAYOUT,
  );
  try {
    return createPipeline(dir, family, provider, schedulerConfig, scalingFactor, tokenizer, sessions);
  } catch (error) {
    await Promise.allSettled(sessions.map((session) => session.release()));
    throw error;
  }
}

function createPipeline(
  dir: string,
  family: string,
  provider: ExecutionProvider,
  schedulerConfig: SchedulerConfig,
  scalingFactor: number,
  tokenizer: ClipTokenizer,
  sessions: InferenceSession[],
): TextToImage {
  const [textEncoder, unet, vaeDecoder] = sessions;
  const idsMeta = requireTensor(textEncoder, dir, FILES.textEncoder, 'input', 'input_ids', [
    'int32',
    'int64',
  ]);
  const hiddenMeta = requireTensor(
    textEncoder,
    dir,
    FILES.textEncoder,
    'output',
    'last_hidden_state',
    ['float32'],
    true,
  );
  const sampleMeta = requireTensor(unet, dir, FILES.unet, 'input', 'sample', ['float32']);
  const timestepMeta = requireTensor(unet, dir, FILES.unet, 'input', 'timestep', ['float32', 'int64']);
  const contextMeta = requireTensor(unet, dir, FILES.unet, 'input', 'encoder_hidden_states', ['float32']);
  const noiseMeta = requireTensor(unet, dir, FILES.unet, 'output', 'out_sample', ['float32'], true);
  requireTensor(vaeDecoder, dir, FILES.vaeDecoder, 'input', 'latent_sample', ['float32']);
  const imageMeta = requireTensor(vaeDecoder, dir, FILES.vaeDecoder, 'output', 'sample', ['float32'], true);

  const [textWidth, unetWidth] = [hiddenMeta.shape[2], contextMeta.shape[2]];
  if (typeof textWidth === 'number' && typeof unetWidth === 'number' && textWidth !== unetWidth) {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      FILES.unet,
      `encoder_hidden_states has width ${unetWidth} but the text encoder outputs ${textWidth}: the parts come from different models`,
    );
  }
  const channelsDim = sampleMeta.shape[1];
  const latentChannels = typeof channelsDim === 'number' ? channelsDim : 4;
  // A symbolic timestep axis means one timestep per batch row; a fixed [1] is broadcast by the
  // model; rank 0 is a plain scalar.
  const timestepRank = timestepMeta.shape.length;
  const timestepPerRow = timestepRank > 0 && typeof timestepMeta.shape[0] !== 'number';
  const scheduler = schedulerLabel(defaultScheduler(schedulerConfig));
  let released = false;

  async function encodeIds(ids: number[]): Promise<{ states: Float32Array; dims: readonly number[] }> {
    const data = idsMeta.type === 'int64' ? BigInt64Array.from(ids, BigInt) : Int32Array.from(ids);
    const outputs = await textEncoder.run({
      [idsMeta.name]: new ort.Tensor(idsMeta.type, data, [1, ids.length]),
    });
    const hidden = outputs[hiddenMeta.name] as Tensor;
    return { states: hidden.data as Float32Array, dims: hidden.dims };
  }

  async function generate(request: GenerateRequest): Promise<GenerateResult> {
    if (released) throw new Error('the model was released');
    const selection = validate(request, schedulerConfig);
    const { signal, onStep, numImages, steps, guidanceScale } = request;
    signal?.throwIfAborted();

    // Text: one encoder run per distinct prompt (works for fixed-batch exports too).
    const encodeStart = performance.now();
    const guided = guidanceScale > 1;
    const prompt = tokenizer.encode(request.prompt);
    const cond = await encodeIds(prompt.ids);
    const uncond = guided ? await encodeIds(tokenizer.encode(request.negativePrompt).ids) : undefined;
    const rows = guided ? 2 * numImages : numImages;
    const rowStates = cond.states.length;
    // Batch layout [uncond × numImages; cond × numImages], as diffusers concatenates it.
    const contextData = new Float32Array(rows * rowStates);
    for (let i = 0; i < numImages; i++) {
      if (uncond) contextData.set(uncond.states, i * rowStates);
      contextData.set(cond.states, ((uncond ? numImages : 0) + i) * rowStates);
    }
    const context = new ort.Tensor('float32', contextData, [rows, cond.dims[1], cond.dims[2]]);
    const encodeMs = performance.now() - encodeStart;

    // Denoising: every buffer is allocated here once; the loop only writes into them.
    const denoiseStart = performance.now();
    const latentHeight = request.height / VAE_FACTOR;
    const latentWidth = request.width / VAE_FACTOR;
    const perImage = latentChannels * latentHeight * latentWidth;
    // Image i's initial latent and any per-step noise come from its own stream (random.ts).
    const streams = batchNoise(request.seed, numImages, perImage);
    const schedule = createScheduler(schedulerConfig, steps, selection, { noise: streams.fill });
    const latents = initialLatents(request.seed, numImages, perImage, schedule.initNoiseSigma, streams);
    const n = latents.length;
    const latentDims = [rows, latentChannels, latentHeight, latentWidth];
    const modelInput = new Float32Array(rows * perImage);
    const noise = new Float32Array(rows * perImage);
    // Guidance is combined in place into the unconditional half, which the scheduler then reads.
    const modelOutput = guided ? noise.subarray(0, n) : noise;
    const timestepLength = timestepPerRow ? rows : 1;
    const timestepData =
      timestepMeta.type === 'int64' ? new BigInt64Array(timestepLength) : new Float32Array(timestepLength);
    // diffusers' ONNX pipeline casts with numpy astype, which truncates fractional timesteps.
    const int64Timesteps =
      timestepData instanceof BigInt64Array
        ? BigInt64Array.from(schedule.timesteps, (t) => BigInt(Math.trunc(t)))
        : undefined;
    const feeds = {
      [sampleMeta.name]: new ort.Tensor('float32', modelInput, latentDims),
      [timestepMeta.name]: new ort.Tensor(
        timestepMeta.type,
        timestepData,
        timestepRank === 0 ? [] : [timestepLength],
      ),
      encoder_hidden_states: context,
    };
    const fetches = { [noiseMeta.name]: new ort.Tensor('float32', noise, latentDims) };
    let unetMs = 0;
    let unetCalls = 0;

    const loopStart = performance.now();
    for (let step = 0; step < steps; step++) {
      const scale = schedule.inputScale(step);
      if (scale === 1) modelInput.set(latents);
      else for (let k = 0; k < n; k++) modelInput[k] = latents[k] * scale;
      // Both guidance halves see the same latents.
      if (guided) modelInput.copyWithin(n, 0, n);
      if (int64Timesteps) (timestepData as BigInt64Array).fill(int64Timesteps[step]);
      else (timestepData as Float32Array).fill(schedule.timesteps[step]);

      const runStart = performance.now();
      await unet.run(feeds, fetches);
      unetMs += performance.now() - runStart;
      unetCalls++;

      if (guided) {
        for (let k = 0; k < n; k++) {
          const u = noise[k];
          noise[k] = u + guidanceScale * (noise[n + k] - u);
        }
      }
      schedule.step(step, latents, modelOutput);
      onStep?.(step + 1, steps);
      signal?.throwIfAborted();
    }
    const loopMs = performance.now() - loopStart;
    const denoiseMs = performance.now() - denoiseStart;

    // One image at a time through the VAE: its activations at full resolution dominate memory.
    const decodeStart = performance.now();
    const images: GeneratedImage[] = [];
    const vaeInput = new Float32Array(perImage);
    const vaeTensor = new ort.Tensor('float32', vaeInput, [1, latentChannels, latentHeight, latentWidth]);
    for (let i = 0; i < numImages; i++) {
      const image = latents.subarray(i * perImage, (i + 1) * perImage);
      for (let k = 0; k < perImage; k++) vaeInput[k] = image[k] / scalingFactor;
      const outputs = await vaeDecoder.run({ latent_sample: vaeTensor });
      const decoded = outputs[imageMeta.name] as Tensor;
      const [, channels, height, width] = decoded.dims;
      if (channels !== 3 || height !== request.height || width !== request.width) {
        throw new ModelLoadError(
          'model_invalid',
          dir,
          FILES.vaeDecoder,
          `decoded [${decoded.dims}] for a ${request.width}×${request.height} request (expected [1,3,${request.height},${request.width}])`,
        );
      }
      images.push({ rgb: chwToRgb(decoded.data as Float32Array, width, height), width, height });
    }
    const decodeMs = performance.now() - decodeStart;

    return {
      images,
      seed: request.seed,
      scheduler: schedulerLabel(selection),
      promptTruncated: prompt.truncated,
      timings: { encodeMs, denoiseMs, decodeMs, loopMs, unetMs, unetCalls },
    };
  }

  return {
    info: { family, dir, provider, scheduler },
    generate,
    async release() {
      if (released) return;
      released = true;
      await Promise.all(sessions.map((session) => session.release()));
    },
  };
}
