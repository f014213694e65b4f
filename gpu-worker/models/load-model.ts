// The registry of pipeline families, picked for a model folder by its model_index.json
// `_class_name`. A new family (e.g. Kandinsky 2.1) is a folder beside sd/ whose family.ts exports a
// ModelFamily, plus one line in FAMILIES. Importing this module loads no ONNX Runtime (each family
// imports its pipeline when it loads), so the CLI reads the families' file lists cheaply.

import { kandinsky } from './kandinsky/family.ts';
import { ModelLoadError } from './model-errors.ts';
import { readModelJson, requireFile } from './model-files.ts';
import { stableDiffusion } from './sd/family.ts';
import type { LoadOptions, ModelFamily, TextToImage } from './text-to-image.ts';

export type { LoadOptions } from './text-to-image.ts';

export const FAMILIES: readonly ModelFamily[] = [stableDiffusion, kandinsky];

/** Every `_class_name` some family loads. */
export const SUPPORTED_FAMILIES: readonly string[] = FAMILIES.flatMap((family) => family.classNames);

/** The family that loads model_index.json `_class_name`, if any does. */
export function familyFor(className: string): ModelFamily | undefined {
  return FAMILIES.find((family) => family.classNames.includes(className));
}

/** Before the family is known, a folder is expected in any family's layout. */
function anyLayout(): string {
  return FAMILIES.map((family) => family.layout).join('; or ');
}

/** The family that loads the model in `dir`, from its model_index.json `_class_name`. */
export async function familyOf(dir: string): Promise<ModelFamily & { className: string }> {
  const indexFile = 'model_index.json';
  await requireFile(dir, indexFile, anyLayout());
  const index = await readModelJson(dir, indexFile);
  const className = (index as { _class_name?: unknown } | null)?._class_name;
  if (typeof className !== 'string') {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      indexFile,
      `has no "_class_name" (expected ${anyLayout()})`,
    );
  }
  const family = familyFor(className);
  if (!family) {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      indexFile,
      `unsupported pipeline "${className}" (supported: ${SUPPORTED_FAMILIES.join(', ')})`,
    );
  }
  return { ...family, className };
}

/** Loads every session of the model in `dir` once; the result stays warm until release(). */
export async function loadTextToImage(dir: string, options: LoadOptions): Promise<TextToImage> {
  const family = await familyOf(dir);
  return family.load(dir, { ...options, family: family.className });
}
