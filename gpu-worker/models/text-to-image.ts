// The contract between the worker (and the local CLI) and any diffusion pipeline family.
// The worker only ever sees TextToImage; which family runs is chosen from the model's
// model_index.json `_class_name` by the registry in load-model.ts, where each family (a folder
// beside sd/) is one ModelFamily.

export type ExecutionProvider = 'cpu' | 'cuda';

// The sampler names are part of the request contract (db/generation-contract.ts).
import type { GenerationStage } from '../../db/types.ts';
import type { SchedulerChoice } from '../../shared/generation-contract.ts';
import type { ModelCapabilities } from '../../shared/model-capabilities.ts';

export {
  KARRAS_SCHEDULER_CHOICES,
  SCHEDULER_CHOICES,
  type SchedulerChoice,
} from '../../shared/generation-contract.ts';

export interface GenerateRequest {
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  guidanceScale: number;
  /** 0..2^32-1; image i of a batch uses seed + i (see random.ts for the rule). */
  seed: number;
  numImages: number;
  /**
   * Sampler to run. Absent: the model's scheduler_config.json decides (`ModelInfo.scheduler`).
   * A chosen sampler reads the model's config the way diffusers' `from_config` would (training
   * schedule, prediction type, spacing, use_karras_sigmas).
   */
  scheduler?: SchedulerChoice;
  /**
   * Karras σ spacing. Absent: the config's use_karras_sigmas. `true` is an input error for the
   * samplers outside KARRAS_SCHEDULER_CHOICES.
   */
  karras?: boolean;
  /** Checked between denoising steps; an aborted run rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called after every denoising step (1-based step). Must be cheap: it runs on the hot path. */
  onStep?: (step: number, total: number) => void;
}

export interface GeneratedImage {
  /** Interleaved RGB, 8 bits per channel, row-major (HWC), length width*height*3. */
  rgb: Uint8Array;
  width: number;
  height: number;
}

/** The stages of db/types.ts' GENERATION_STAGES that the model runs (the worker times the others). */
export type ModelStage = Extract<GenerationStage, 'encode' | 'denoise' | 'decode'>;

/**
 * `encodeMs`, `denoiseMs` (the whole denoising loop, UNet runs included) and `decodeMs`: the
 * worker stores them as the resource's `encode_ms`, `denoise_ms` and `decode_ms`. The rest are
 * the loop's internals, for the benchmarks.
 */
export interface StageTimings extends Record<`${ModelStage}Ms`, number> {
  /** The step loop alone (denoiseMs also counts per-job setup: the schedule and initial noise). */
  loopMs: number;
  /** Time inside the UNet's `run` calls alone (loopMs − unetMs is the loop's own JS overhead). */
  unetMs: number;
  /** UNet runs in the loop (one per step: guidance batches both halves into one run). */
  unetCalls: number;
  /** Two-stage families (Kandinsky): time inside the prior's runs, and how many (counted in encodeMs). */
  priorMs?: number;
  priorCalls?: number;
  /** The prior's step loop alone (priorLoopMs − priorMs is its own JS overhead). */
  priorLoopMs?: number;
}

export interface GenerateResult {
  images: GeneratedImage[];
  seed: number;
  /** The sampler that ran: a SchedulerChoice, suffixed `_karras` with Karras σ (e.g. `dpmpp_2m_karras`). */
  scheduler: string;
  promptTruncated: boolean;
  timings: StageTimings;
}

export interface ModelInfo {
  /** model_index.json `_class_name`. */
  family: string;
  dir: string;
  provider: ExecutionProvider;
  /** The sampler a request without `scheduler` runs, named as GenerateResult.scheduler names it. */
  scheduler: string;
}

export interface TextToImage {
  readonly info: ModelInfo;
  generate(request: GenerateRequest): Promise<GenerateResult>;
  /** Releases every ONNX session; the instance is unusable afterwards. */
  release(): Promise<void>;
}

export interface LoadOptions {
  provider: ExecutionProvider;
}

export interface FamilyLoadOptions extends LoadOptions {
  /** model_index.json `_class_name`, reported in `info.family`. */
  family?: string;
}

/** One pipeline family, as the registry in load-model.ts lists it. */
export interface ModelFamily {
  /** Short name for messages, e.g. `stable-diffusion`. */
  readonly name: string;
  /** The model_index.json `_class_name`s this family loads. */
  readonly classNames: readonly string[];
  /** The folder layout in words, named by every load error ("expected …"). */
  readonly layout: string;
  /**
   * The repository files the family loads, as globs over repository paths (`*` also matches `/`,
   * as in huggingface-cli --include): what `easel models fetch` downloads for it.
   */
  readonly fetchFiles: readonly string[];
  /**
   * What a model of this family in `dir` can be asked for (its config files may decide some of
   * it, e.g. the default sampler); a model's easel-model.json can narrow it (model-card.ts).
   */
  capabilities(dir: string): Promise<ModelCapabilities>;
  /** Opens every session once; the model stays warm until release(). */
  load(dir: string, options: FamilyLoadOptions): Promise<TextToImage>;
}
