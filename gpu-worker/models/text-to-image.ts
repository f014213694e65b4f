// The contract between the worker (and the local CLI) and any diffusion pipeline family.
// The worker only ever sees this interface; which family runs is chosen from the model's
// model_index.json `_class_name` by load-model.ts.

export type ExecutionProvider = 'cpu' | 'cuda';

// The sampler names are part of the request contract (db/generation-contract.ts).
import type { SchedulerChoice } from '../../shared/generation-contract.ts';

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

export interface StageTimings {
  encodeMs: number;
  /** The whole denoising loop, UNet runs included. */
  denoiseMs: number;
  decodeMs: number;
  /** The step loop alone (denoiseMs also counts per-job setup: the schedule and initial noise). */
  loopMs: number;
  /** Time inside the UNet's `run` calls alone (loopMs − unetMs is the loop's own JS overhead). */
  unetMs: number;
  /** UNet runs in the loop (one per step: guidance batches both halves into one run). */
  unetCalls: number;
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
