// The XLM-RoBERTa tokenizer of Kandinsky 2.1's decoder (XLMRobertaTokenizerFast: SentencePiece
// Unigram, `<s>` 0, `<pad>` 1, `</s>` 2), on transformers.js, from the export's tokenizer.json
// read here (transformers.js never looks for a hub or a cache). Prompts are padded to 77 tokens
// with an attention mask, as diffusers' KandinskyPipeline._encode_prompt asks for
// (padding="max_length", truncation=True, max_length=77).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { XLMRobertaTokenizer } from '@huggingface/transformers';
import { ModelLoadError } from '../model-errors.ts';

export const XLMR_MAX_LENGTH = 77;

export interface MaskedPrompt {
  ids: number[];
  /** 1 for the prompt's tokens (with <s> and </s>), 0 for padding. */
  mask: number[];
  truncated: boolean;
}

export interface XlmrTokenizer {
  encode(text: string): MaskedPrompt;
}

async function readJson(modelDir: string, file: string, optional: boolean): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(join(modelDir, file), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      if (optional) return {};
      throw new ModelLoadError(
        'model_missing_file',
        modelDir,
        file,
        'file does not exist (expected an XLM-R tokenizer.json)',
      );
    }
    throw error;
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw new ModelLoadError('model_corrupt', modelDir, file, 'not valid JSON', { cause: error });
  }
}

/** `relDir`: the tokenizer folder relative to the model folder (errors name files from there). */
export async function loadXlmrTokenizer(modelDir: string, relDir: string): Promise<XlmrTokenizer> {
  const [json, config] = await Promise.all([
    readJson(modelDir, `${relDir}/tokenizer.json`, false),
    readJson(modelDir, `${relDir}/tokenizer_config.json`, true),
  ]);
  let tokenizer: XLMRobertaTokenizer;
  try {
    tokenizer = new XLMRobertaTokenizer(json, config);
  } catch (error) {
    throw new ModelLoadError(
      'model_invalid',
      modelDir,
      `${relDir}/tokenizer.json`,
      (error as Error).message,
      {
        cause: error,
      },
    );
  }
  const eos = tokenizer.eos_token_id ?? 2;
  const pad = tokenizer.pad_token_id ?? 1;
  return {
    encode(text) {
      const ids = tokenizer.encode(text, { add_special_tokens: true });
      const truncated = ids.length > XLMR_MAX_LENGTH;
      if (truncated) {
        ids.length = XLMR_MAX_LENGTH - 1;
        ids.push(eos);
      }
      const mask = ids.map(() => 1);
      while (ids.length < XLMR_MAX_LENGTH) {
        ids.push(pad);
        mask.push(0);
      }
      return { ids, mask, truncated };
    },
  };
}
