// Errors the worker must tell apart from transient failures: both are permanent, so a job that
// meets one is failed at once instead of retried. `code` is stable and safe to show to clients.

export type ModelLoadErrorCode =
  | 'model_missing_file'
  | 'model_corrupt'
  | 'model_invalid'
  | 'execution_provider_unavailable';

export class ModelLoadError extends Error {
  readonly code: ModelLoadErrorCode;
  /** Path of the offending file relative to the model folder ('' when the folder itself is at fault). */
  readonly file: string;
  readonly dir: string;

  constructor(code: ModelLoadErrorCode, dir: string, file: string, detail: string, options?: ErrorOptions) {
    super(file ? `${file}: ${detail}` : detail, options);
    this.name = 'ModelLoadError';
    this.code = code;
    this.dir = dir;
    this.file = file;
  }
}

export class GenerationInputError extends Error {
  readonly code = 'invalid_generation_input';
  /** The request field at fault, so the API can point at it. */
  readonly field: string;

  constructor(field: string, message: string) {
    super(message);
    this.name = 'GenerationInputError';
    this.field = field;
  }
}

/** ONNX Runtime's complaint about a file that is not an ONNX model, as model_corrupt; undefined for any other error. */
export function corruptOnnxError(dir: string, file: string, error: unknown): ModelLoadError | undefined {
  const message = error instanceof Error ? error.message : String(error);
  if (!/protobuf parsing failed|ModelProto does not have a graph/i.test(message)) return undefined;
  return new ModelLoadError('model_corrupt', dir, file, 'not a valid ONNX model (protobuf parsing failed)', {
    cause: error,
  });
}
