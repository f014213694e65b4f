// Decides what a failed attempt means: permanent failures end the generation at once,
// transient ones go back to pg-boss for a retry with backoff.
import { GenerationInputError, ModelLoadError } from './models/model-errors.ts';

export interface Failure {
  code: string;
  message: string;
  permanent: boolean;
}

export class ShutdownAbort extends Error {
  override name = 'ShutdownAbort';
}

export class JobTimeoutAbort extends Error {
  override name = 'JobTimeoutAbort';
}

export function classifyFailure(error: unknown): Failure {
  if (error instanceof GenerationInputError)
    return { code: error.code, message: error.message, permanent: true };
  // A model that loaded at boot but fails its contract mid-run will fail every retry too.
  if (error instanceof ModelLoadError) return { code: error.code, message: error.message, permanent: true };
  if (error instanceof JobTimeoutAbort) return { code: 'timeout', message: error.message, permanent: false };
  if (error instanceof ShutdownAbort)
    return { code: 'worker_shutdown', message: error.message, permanent: false };
  const code = (error as { code?: unknown })?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'storage_unavailable') return { code, message, permanent: false };
  return { code: 'internal_error', message, permanent: false };
}

/** A client canceled the generation: the job ends as canceled, neither failed nor retried. */
export class CancelAbort extends Error {
  override name = 'CancelAbort';
}
