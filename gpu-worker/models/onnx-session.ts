// Opening ONNX Runtime sessions with errors a person can act on. ORT's own messages name neither
// the model part nor the fix; these are turned into ModelLoadError with the file relative to the
// model folder. Loading from the path (not a buffer) keeps external-data weights (weights.pb) working.

import { join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import ort from 'onnxruntime-node';
import { corruptOnnxError, ModelLoadError } from './model-errors.ts';
import { requireFile } from './model-files.ts';
import type { ExecutionProvider } from './text-to-image.ts';

let runtimeConfigured = false;

function configureRuntime(): void {
  if (runtimeConfigured) return;
  // ORT logs warnings (e.g. unused initialisers, provider notes) straight to stderr, bypassing
  // the JSON logs; errors still reach us as exceptions.
  ort.env.logLevel = 'fatal';
  runtimeConfigured = true;
}

function describeLoadFailure(
  dir: string,
  file: string,
  provider: ExecutionProvider,
  error: unknown,
): ModelLoadError {
  const message = error instanceof Error ? error.message : String(error);
  if (/Failed to load shared library|providers_cuda|CUDA/i.test(message) && provider === 'cuda') {
    // Not the file's fault: no file name in the message.
    return new ModelLoadError(
      'execution_provider_unavailable',
      dir,
      '',
      'the CUDA execution provider could not be loaded. On a machine with CUDA 12 and cuDNN 9, install its libraries with ' +
        '`npm run install:cuda` (the default install skips them), or set the provider to cpu. ' +
        `ONNX Runtime said: ${message}`,
      { cause: error },
    );
  }
  return (
    corruptOnnxError(dir, file, error) ??
    new ModelLoadError('model_invalid', dir, file, `ONNX Runtime could not load it: ${message}`, {
      cause: error,
    })
  );
}

/**
 * Opens one session on exactly `provider`; ORT does not fall back to CPU when CUDA is missing, nor
 * do we. `layout` (the family's) is what a missing-file error says the folder should hold.
 */
export async function openSession(
  dir: string,
  file: string,
  provider: ExecutionProvider,
  layout: string,
): Promise<InferenceSession> {
  await requireFile(dir, file, layout);
  configureRuntime();
  try {
    return await ort.InferenceSession.create(join(dir, file), {
      executionProviders: [provider],
      graphOptimizationLevel: 'all',
    });
  } catch (error) {
    throw describeLoadFailure(dir, file, provider, error);
  }
}

/** Opens several sessions in parallel; if any fails, releases the others before rethrowing. */
export async function openSessions(
  dir: string,
  files: readonly string[],
  provider: ExecutionProvider,
  layout: string,
): Promise<InferenceSession[]> {
  const settled = await Promise.allSettled(files.map((file) => openSession(dir, file, provider, layout)));
  const failure = settled.find((result) => result.status === 'rejected');
  if (!failure) return settled.map((result) => (result as PromiseFulfilledResult<InferenceSession>).value);
  await Promise.allSettled(
    settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value.release()] : [])),
  );
  throw failure.reason;
}

export type TensorMetadata = InferenceSession.ValueMetadata & { isTensor: true };

/**
 * Finds the named tensor input/output and checks its element type, so a model with an
 * unexpected signature fails at load with a message instead of at the first generation.
 */
export function requireTensor(
  session: InferenceSession,
  dir: string,
  file: string,
  kind: 'input' | 'output',
  name: string,
  types: readonly string[],
  fallbackToFirst = false,
): TensorMetadata {
  const list = kind === 'input' ? session.inputMetadata : session.outputMetadata;
  const found = list.find((meta) => meta.name === name) ?? (fallbackToFirst ? list[0] : undefined);
  const names = list.map((meta) => meta.name).join(', ') || '(none)';
  if (!found?.isTensor) {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      file,
      `expected a tensor ${kind} "${name}", found ${kind}s: ${names}`,
    );
  }
  if (!types.includes(found.type)) {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      file,
      `${kind} "${found.name}" is ${found.type}, expected ${types.join(' or ')} (Easel runs float32 exports)`,
    );
  }
  return found;
}
