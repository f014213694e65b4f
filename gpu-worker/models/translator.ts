// Russian→English prompt translation with a Marian (opus-mt-ru-en) ONNX export on transformers.js.
//
// Warm by construction: `loadTranslator` creates the tokenizer and both ONNX Runtime sessions
// (encoder, merged decoder) once; every `translate` call reuses them, and nothing is read from
// disk after load. Offline by construction: remote models are disabled and the folder is passed as
// an absolute path, so transformers.js never contacts a hub or writes a cache.

import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { env, LogLevel, pipeline, type TranslationPipeline } from '@huggingface/transformers';
import { MARIAN_FILES, MARIAN_LAYOUT, REQUIRED_MARIAN_FILES } from './marian-layout.ts';
import { corruptOnnxError, ModelLoadError } from './model-errors.ts';
import { readModelJson, requireFile } from './model-files.ts';

export type TranslationMode = 'auto' | 'always' | 'off';

export interface Translator {
  /** Translates one prompt; lines are translated separately and joined with '\n'. */
  translate(text: string): Promise<string>;
  /** Releases the ONNX Runtime sessions; the translator cannot be used afterwards. */
  release(): Promise<void>;
  readonly info: { dir: string };
}

export interface TranslatedPrompt {
  promptEn: string;
  translated: boolean;
  /** Time spent in the model (0 when the prompt was passed through). */
  ms: number;
}

/** Generated tokens per line: generous for a prompt, and a hard stop for a model that never emits `</s>`. */
export const MAX_NEW_TOKENS = 256;

const CYRILLIC = /\p{Script=Cyrillic}/u;

/**
 * auto: the text contains Cyrillic (Russian, the translator's source language) and the model
 * does not read Russian natively (`nativeLanguages`, its `languages` capability); always: the
 * text is not blank; off: never.
 */
export function needsTranslation(
  text: string,
  mode: TranslationMode,
  nativeLanguages: readonly string[] = ['en'],
): boolean {
  switch (mode) {
    case 'off':
      return false;
    case 'always':
      return text.trim() !== '';
    case 'auto':
      return !nativeLanguages.includes('ru') && CYRILLIC.test(text);
  }
}

/**
 * The English prompt for `text`: translated when the mode asks for it and a translator is
 * loaded, otherwise `text` unchanged (the caller decides whether a missing translator is worth a warning).
 */
export async function translatePrompt(
  translator: Translator | undefined,
  text: string,
  mode: TranslationMode,
  nativeLanguages?: readonly string[],
): Promise<TranslatedPrompt> {
  if (!translator || !needsTranslation(text, mode, nativeLanguages)) {
    return { promptEn: text, translated: false, ms: 0 };
  }
  const started = performance.now();
  const promptEn = await translator.translate(text);
  return { promptEn, translated: true, ms: performance.now() - started };
}

/** Checks the folder before transformers.js sees it: its own errors for a bad folder name nothing useful. */
async function checkFolder(dir: string): Promise<void> {
  let isDirectory = false;
  try {
    isDirectory = (await stat(dir)).isDirectory();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (!isDirectory) {
    throw new ModelLoadError(
      'model_missing_file',
      dir,
      '',
      `translator folder ${dir} does not exist (expected ${MARIAN_LAYOUT})`,
    );
  }
  for (const file of REQUIRED_MARIAN_FILES) await requireFile(dir, file, MARIAN_LAYOUT);

  const config = await readModelJson(dir, MARIAN_FILES.config);
  const modelType = (config as { model_type?: unknown } | null)?.model_type;
  if (modelType !== 'marian') {
    throw new ModelLoadError(
      'model_invalid',
      dir,
      MARIAN_FILES.config,
      `model_type is ${JSON.stringify(modelType)}, expected "marian" (a Helsinki-NLP opus-mt model)`,
    );
  }
}

function configureTransformers(): void {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  // transformers.js logs with console.* (outside the JSON logs); at its default level every Marian
  // load prints a warning that its tokenizer is "not yet supported by fast tokenizers", which is
  // expected for opus-mt and not actionable. Errors still come through as exceptions.
  if (env.logLevel < LogLevel.ERROR) env.logLevel = LogLevel.ERROR;
}

function describeLoadFailure(dir: string, error: unknown): ModelLoadError {
  const message = error instanceof Error ? error.message : String(error);
  // ORT names the file it failed on by absolute path; report it relative to the folder.
  const file = REQUIRED_MARIAN_FILES.find((name) => message.includes(join(dir, name))) ?? '';
  return (
    corruptOnnxError(dir, file, error) ??
    new ModelLoadError(
      'model_invalid',
      dir,
      file,
      `transformers.js could not load the translator: ${message}`,
      {
        cause: error,
      },
    )
  );
}

/** Loads a Marian export once (tokenizer + encoder + merged decoder sessions, CPU, fp32). */
export async function loadTranslator(modelDir: string): Promise<Translator> {
  const dir = resolve(modelDir);
  await checkFolder(dir);
  configureTransformers();

  let translation: TranslationPipeline;
  try {
    translation = await pipeline('translation', dir, {
      device: 'cpu',
      dtype: 'fp32',
      local_files_only: true,
    });
  } catch (error) {
    throw describeLoadFailure(dir, error);
  }

  // One translation at a time: calls for the prompt and the negative prompt arrive together, and
  // queuing them keeps each run on the full thread pool (and the output independent of timing).
  let queue: Promise<unknown> = Promise.resolve();
  let released = false;

  async function translateLine(line: string): Promise<string> {
    const output = await translation(line, {
      max_new_tokens: MAX_NEW_TOKENS,
      num_beams: 1,
      do_sample: false,
    });
    const first = (Array.isArray(output) ? output[0] : output) as { translation_text?: unknown } | undefined;
    if (typeof first?.translation_text !== 'string') {
      throw new Error('the translation pipeline returned no translation_text');
    }
    return first.translation_text.trim();
  }

  async function translateText(text: string): Promise<string> {
    // Marian is trained on sentences; a multi-line prompt is translated line by line so no line is
    // dropped, and blank lines are kept as they are.
    const lines = text.split(/\r?\n/);
    const out: string[] = [];
    for (const line of lines) out.push(line.trim() === '' ? line : await translateLine(line));
    return out.join('\n');
  }

  return {
    info: { dir },
    translate(text) {
      if (released) return Promise.reject(new Error(`translator ${dir} has been released`));
      const result = queue.then(() => translateText(text));
      queue = result.catch(() => undefined);
      return result;
    },
    async release() {
      if (released) return;
      released = true;
      await queue;
      await translation.dispose();
    },
  };
}
