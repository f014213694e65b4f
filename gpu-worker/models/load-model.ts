// Picks the pipeline family for a model folder from model_index.json `_class_name`. A new family
// (e.g. Kandinsky 2.1) is one module exporting a loader plus one line in `families`.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelLoadError } from './model-errors.ts';
import { ONNX_LAYOUT, requireFile } from './onnx-session.ts';
import { loadStableDiffusion } from './sd-pipeline.ts';
import type { ExecutionProvider, TextToImage } from './text-to-image.ts';

export interface LoadOptions {
  provider: ExecutionProvider;
}

type FamilyLoader = (dir: string, options: LoadOptions & { family: string }) => Promise<TextToImage>;

const families: Record<string, FamilyLoader> = {
  OnnxStableDiffusionPipeline: loadStableDiffusion,
  StableDiffusionPipeline: loadStableDiffusion,
};

export const SUPPORTED_FAMILIES = Object.keys(families);

/** Loads every session of the model in `dir` once; the result stays warm until release(). */
export async function loadTextToImage(dir: string, options: LoadOptions): Promise<TextToImage> {
  const indexFile = 'model_index.json';
  await requireFile(dir, indexFile);
  let index: unknown;
  try {
    index = JSON.parse(await readFile(join(dir, indexFile), 'utf8'));
  } catch (error) {
    throw new ModelLoadError('model_corrupt', dir, indexFile, 'not valid JSON', { cause: error });
  }
  const family = (index as { _class_name?: unknown } | null)?._class_name;
  if (typeof family !== 'string') {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      indexFile,
      `has no "_class_name" (expected ${ONNX_LAYOUT})`,
    );
  }
  const loader = Object.hasOwn(families, family) ? families[family] : undefined;
  if (!loader) {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      indexFile,
      `unsupported pipeline "${family}" (supported: ${SUPPORTED_FAMILIES.join(', ')})`,
    );
  }
  return loader(dir, { ...options, family });
}
