// What the fleet is told about a model folder: its id, family, capabilities (the family's, narrowed
// by an optional easel-model.json beside model_index.json) and the content hash of its files.
// Reads plain files only (no ONNX Runtime), so `easel models register --dir` uses it too.
//
// easel-model.json, all optional:
//   { "id": "sd-turbo", "capabilities": { "samplers": ["euler_a"], "steps": { "max": 8, "default": 4 } } }
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { z } from 'zod';
import { MODEL_ID_PATTERN } from '../../db/queue.ts';
import {
  CapabilitiesOverrideSchema,
  type ModelCapabilities,
  mergeCapabilities,
} from '../../shared/model-capabilities.ts';
import { familyOf } from './load-model.ts';
import { ModelLoadError } from './model-errors.ts';
import { parsePythonJson } from './model-files.ts';
import type { ModelFamily } from './text-to-image.ts';

export const MODEL_CARD_FILE = 'easel-model.json';

const ModelCardFile = z.strictObject({
  id: z.string().regex(MODEL_ID_PATTERN).optional(),
  capabilities: CapabilitiesOverrideSchema.optional(),
});

export interface ModelCard {
  id: string;
  family: ModelFamily;
  capabilities: ModelCapabilities;
}

/**
 * The model id a folder is served as: MODEL_ID when set, else the card's id, else the folder's
 * name made into a valid id (lowercased, other characters as '-').
 */
export function defaultModelId(dir: string): string {
  const id = basename(dir)
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 64);
  return id || 'model';
}

export async function readModelCard(dir: string, idOverride?: string): Promise<ModelCard> {
  const family = await familyOf(dir);
  let raw: unknown = {};
  try {
    raw = parsePythonJson(await readFile(`${dir}/${MODEL_CARD_FILE}`, 'utf8'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ModelLoadError('model_corrupt', dir, MODEL_CARD_FILE, 'not valid JSON', { cause: error });
    }
  }
  const card = ModelCardFile.safeParse(raw);
  if (!card.success) {
    const issue = card.error.issues[0];
    throw new ModelLoadError(
      'model_invalid',
      dir,
      MODEL_CARD_FILE,
      `${issue?.path.join('.') || 'file'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  const base = await family.capabilities(dir);
  let capabilities: ModelCapabilities;
  try {
    capabilities = mergeCapabilities(base, card.data.capabilities ?? {});
  } catch (error) {
    throw new ModelLoadError('model_invalid', dir, MODEL_CARD_FILE, (error as Error).message);
  }
  return { id: idOverride ?? card.data.id ?? defaultModelId(dir), family, capabilities };
}
