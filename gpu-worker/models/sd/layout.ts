// The Stable Diffusion folder layout: the diffusers/optimum ONNX export (OnnxStableDiffusionPipeline),
// the files the pipeline reads, the text every load error names, and the check run before any
// session opens. No ONNX Runtime here: `easel models fetch` reads SD_FETCH_FILES through the registry.

import { ModelLoadError } from '../model-errors.ts';
import { readModelJson, requireFile } from '../model-files.ts';
import { parseSchedulerConfig, type SchedulerConfig } from '../schedulers/common.ts';

/** Files relative to the model folder. */
export const SD_FILES = Object.freeze({
  scheduler: 'scheduler/scheduler_config.json',
  tokenizer: 'tokenizer',
  textEncoder: 'text_encoder/model.onnx',
  unet: 'unet/model.onnx',
  vaeDecoder: 'vae_decoder/model.onnx',
  /** Optional: its scaling_factor, when present, overrides SD 1.x's. */
  vaeConfig: 'vae_decoder/config.json',
});

export const SD_LAYOUT =
  'the diffusers/optimum ONNX layout: model_index.json, scheduler/scheduler_config.json, ' +
  'tokenizer/{vocab.json,merges.txt}, text_encoder/model.onnx, unet/model.onnx, vae_decoder/model.onnx';

/**
 * What `easel models fetch` downloads from an SD export: globs over repository paths (`*` also
 * matches `/`). External-data weights (`unet/weights.pb`) come with their folder; the exports'
 * vae_encoder/, safety_checker/ and feature_extractor/ are left out (Easel does not run them).
 */
export const SD_FETCH_FILES: readonly string[] = Object.freeze([
  'model_index.json',
  '*/config.json',
  'scheduler/*',
  'tokenizer/*',
  'text_encoder/*',
  'unet/*',
  'vae_decoder/*',
]);

/** Every file the pipeline needs, checked before any session opens so a broken folder fails fast and names the file. */
export async function checkLayout(dir: string): Promise<void> {
  for (const file of [SD_FILES.scheduler, SD_FILES.textEncoder, SD_FILES.unet, SD_FILES.vaeDecoder]) {
    await requireFile(dir, file, SD_LAYOUT);
  }
}

/** The model's scheduler_config.json, parsed; load errors name the file. */
export async function loadSchedulerConfig(dir: string): Promise<SchedulerConfig> {
  await requireFile(dir, SD_FILES.scheduler, SD_LAYOUT);
  try {
    return parseSchedulerConfig(await readModelJson(dir, SD_FILES.scheduler));
  } catch (error) {
    if (error instanceof ModelLoadError) throw error;
    throw new ModelLoadError('model_invalid', dir, SD_FILES.scheduler, (error as Error).message, {
      cause: error,
    });
  }
}
