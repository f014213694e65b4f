// The Kandinsky 2.1/2.2 folder layout: a diffusers-style ONNX export of the combined pipeline
// (prior + decoder) as infra/export/kandinsky_to_onnx.py writes it, the files the pipeline reads,
// the text every load error names, and the check run before any session opens. No ONNX Runtime
// here: the registry (and `easel models fetch`) reads it cheaply.

import { ModelLoadError } from '../model-errors.ts';
import { readModelJson, requireFile } from '../model-files.ts';
import { parseSchedulerConfig, type SchedulerConfig } from '../schedulers/common.ts';

export type KandinskyVersion = '2.1' | '2.2';

export const KANDINSKY_CLASS_NAMES: Record<string, KandinskyVersion> = {
  KandinskyCombinedPipeline: '2.1',
  KandinskyV22CombinedPipeline: '2.2',
};

/** Files relative to the model folder. */
export const KANDINSKY_FILES = Object.freeze({
  priorTokenizer: 'prior_tokenizer',
  priorTextEncoder: 'prior_text_encoder/model.onnx',
  /** The image encoder's embedding of an all-zero image: the prior's negative without a negative prompt. */
  zeroImageEmbeds: 'prior_image_encoder/zero_image_embeds.json',
  prior: 'prior_prior/model.onnx',
  clipStats: 'prior_prior/clip_stats.json',
  priorScheduler: 'prior_scheduler/scheduler_config.json',
  /** 2.1 only: the multilingual (XLM-RoBERTa) tokenizer and text encoder of the decoder. */
  tokenizer: 'tokenizer',
  textEncoder: 'text_encoder/model.onnx',
  unet: 'unet/model.onnx',
  movq: 'movq_decoder/model.onnx',
  scheduler: 'scheduler/scheduler_config.json',
});

export const KANDINSKY_LAYOUT =
  'the Kandinsky ONNX layout (infra/export/kandinsky_to_onnx.py): model_index.json, ' +
  'prior_tokenizer/{vocab.json,merges.txt}, prior_text_encoder/model.onnx, ' +
  'prior_image_encoder/zero_image_embeds.json, prior_prior/{model.onnx,clip_stats.json}, ' +
  'prior_scheduler/scheduler_config.json, tokenizer/tokenizer.json and text_encoder/model.onnx (2.1), ' +
  'unet/model.onnx, movq_decoder/model.onnx, scheduler/scheduler_config.json';

/** What `easel models fetch` downloads from an export of it (every component folder). */
export const KANDINSKY_FETCH_FILES: readonly string[] = Object.freeze([
  'model_index.json',
  'prior_tokenizer/*',
  'prior_text_encoder/*',
  'prior_image_encoder/*',
  'prior_prior/*',
  'prior_scheduler/*',
  'tokenizer/*',
  'text_encoder/*',
  'unet/*',
  'movq_decoder/*',
  'scheduler/*',
]);

/** The files a version needs, checked before any session opens so a broken folder names its file. */
export function requiredFiles(version: KandinskyVersion): string[] {
  const f = KANDINSKY_FILES;
  const common = [
    f.priorTextEncoder,
    f.zeroImageEmbeds,
    f.prior,
    f.clipStats,
    f.priorScheduler,
    f.unet,
    f.movq,
    f.scheduler,
  ];
  return version === '2.1' ? [...common, `${f.tokenizer}/tokenizer.json`, f.textEncoder] : common;
}

export async function checkLayout(dir: string, version: KandinskyVersion): Promise<void> {
  for (const file of requiredFiles(version)) await requireFile(dir, file, KANDINSKY_LAYOUT);
}

/** A scheduler_config.json of the folder, parsed; errors name the file. */
export async function loadSchedulerConfigAt(dir: string, file: string): Promise<SchedulerConfig> {
  await requireFile(dir, file, KANDINSKY_LAYOUT);
  try {
    return parseSchedulerConfig(await readModelJson(dir, file));
  } catch (error) {
    if (error instanceof ModelLoadError) throw error;
    throw new ModelLoadError('model_invalid', dir, file, (error as Error).message, { cause: error });
  }
}

/** The version a folder holds, from model_index.json `_class_name`. */
export async function kandinskyVersion(dir: string): Promise<KandinskyVersion> {
  const index = (await readModelJson(dir, 'model_index.json')) as { _class_name?: unknown } | null;
  const version = KANDINSKY_CLASS_NAMES[String(index?._class_name)];
  if (!version) {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      'model_index.json',
      `"_class_name" is ${String(index?._class_name)}, not a Kandinsky pipeline`,
    );
  }
  return version;
}
