// The contract between the worker (and the local CLI) and any diffusion pipeline family.
// The worker only ever sees this interface; which family runs is chosen from the model's
// model_index.json `_class_name` by load-model.ts.

export type ExecutionProvider = 'cpu' | 'cuda';

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
  denoiseMs: number;
  decodeMs: number;
}

export interface GenerateResult {
  images: GeneratedImage[];
  seed: number;
  scheduler: string;
  promptTruncated: boolean;
  timings: StageTimings;
}

export interface ModelInfo {
  /** model_index.json `_class_name`. */
  family: string;
  dir: string;
  provider: ExecutionProvider;
  scheduler: string;
}

export interface TextToImage {
  readonly info: ModelInfo;
  generate(request: GenerateRequest): Promise<GenerateResult>;
  /** Releases every ONNX session; the instance is unusable afterwards. */
  release(): Promise<void>;
}
