// CLIP tokenizer for Stable Diffusion text encoders, on transformers.js.
//
// SD exports ship `tokenizer/` as vocab.json + merges.txt (+ tokenizer_config.json), with no
// tokenizer.json, which is the only format transformers.js loads. So when tokenizer.json is absent
// we build the same object Hugging Face's CLIPTokenizerFast converter produces (byte-level BPE,
// CLIP's pre-tokenisation regex, `</w>` end-of-word suffix, BOS/EOS post-processing, NFC +
// whitespace collapsing + lower-casing) and construct the tokenizer from it directly. The files
// are read here, so transformers.js never looks for a hub or a cache.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLIPTokenizer } from '@huggingface/transformers';
import { ModelLoadError } from './model-errors.ts';

export interface TokenizedPrompt {
  /** BOS first, EOS after the text, padded with the pad token to `maxLength`. */
  ids: number[];
  /** True when the prompt did not fit and tokens were dropped (EOS is kept last). */
  truncated: boolean;
  /** Tokens before the padding (BOS and EOS included): the attention mask's ones. */
  length: number;
}

export interface ClipTokenizer {
  readonly maxLength: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  encode(text: string): TokenizedPrompt;
}

type TokenizerConfig = Record<string, unknown>;

/** SD 1.x/2.x text encoders have 77 positions; configs sometimes carry a huge sentinel instead. */
const DEFAULT_MAX_LENGTH = 77;

// The pre-tokenisation regex of Hugging Face's CLIP tokenizer.json (openai/clip-vit-large-patch14).
const CLIP_SPLIT =
  "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && 'content' in value && typeof value.content === 'string') {
    return value.content;
  }
  return undefined;
}

async function readText(dir: string, file: string): Promise<string | undefined> {
  try {
    return await readFile(join(dir, file), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function parseJson(text: string, file: string, modelDir: string, relDir: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ModelLoadError('model_corrupt', modelDir, `${relDir}/${file}`, 'not valid JSON', {
      cause: error,
    });
  }
}

/** The tokenizer.json object HF's converter would write for a CLIP vocab.json + merges.txt. */
export function clipTokenizerJson(
  vocab: Record<string, number>,
  merges: string[],
  config: TokenizerConfig,
): Record<string, unknown> {
  const bos = tokenContent(config.bos_token) ?? '<|startoftext|>';
  const eos = tokenContent(config.eos_token) ?? '<|endoftext|>';
  const unk = tokenContent(config.unk_token) ?? eos;
  const special = (content: string) => ({
    id: vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  });
  const specials = [...new Set([bos, eos, unk])].filter((t) => vocab[t] !== undefined).map(special);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials,
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'NFC' },
        { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' },
        { type: 'Lowercase' },
      ],
    },
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: CLIP_SPLIT }, behavior: 'Removed', invert: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [eos, vocab[eos]],
      cls: [bos, vocab[bos]],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: '',
      end_of_word_suffix: '</w>',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

/** Parses merges.txt: one "left right" pair per line after the optional `#version` header. */
export function parseMerges(text: string): string[] {
  const merges: string[] = [];
  for (const line of text.split('\n')) {
    const trimmed = line.replace(/\r$/, '');
    if (trimmed === '' || trimmed.startsWith('#version')) continue;
    merges.push(trimmed);
  }
  return merges;
}

/**
 * Loads `tokenizerDir` (a model's `tokenizer/` folder). `modelDir` only makes error messages name
 * files relative to the model folder.
 */
export async function loadClipTokenizer(
  tokenizerDir: string,
  modelDir = tokenizerDir,
): Promise<ClipTokenizer> {
  const relDir = tokenizerDir === modelDir ? '.' : tokenizerDir.slice(modelDir.length).replace(/^[\\/]+/, '');
  const missing = (file: string) =>
    new ModelLoadError(
      'model_missing_file',
      modelDir,
      `${relDir}/${file}`,
      'file does not exist (expected tokenizer.json, or vocab.json + merges.txt as diffusers exports ship them)',
    );

  const [configText, tokenizerText] = await Promise.all([
    readText(tokenizerDir, 'tokenizer_config.json'),
    readText(tokenizerDir, 'tokenizer.json'),
  ]);
  const config = (
    configText ? parseJson(configText, 'tokenizer_config.json', modelDir, relDir) : {}
  ) as TokenizerConfig;

  let tokenizerJson: Record<string, unknown>;
  if (tokenizerText !== undefined) {
    tokenizerJson = parseJson(tokenizerText, 'tokenizer.json', modelDir, relDir) as Record<string, unknown>;
  } else {
    const [vocabText, mergesText] = await Promise.all([
      readText(tokenizerDir, 'vocab.json'),
      readText(tokenizerDir, 'merges.txt'),
    ]);
    if (vocabText === undefined) throw missing('vocab.json');
    if (mergesText === undefined) throw missing('merges.txt');
    const vocab = parseJson(vocabText, 'vocab.json', modelDir, relDir) as Record<string, number>;
    tokenizerJson = clipTokenizerJson(vocab, parseMerges(mergesText), config);
  }

  const tokenizer = new CLIPTokenizer(tokenizerJson, config);
  const bosId = tokenizer.bos_token_id;
  const eosId = tokenizer.eos_token_id;
  const padId = tokenizer.pad_token_id ?? eosId;
  if (bosId === undefined || eosId === undefined || padId === undefined) {
    throw new ModelLoadError(
      'model_invalid',
      modelDir,
      `${relDir}/tokenizer_config.json`,
      'the vocabulary has no BOS/EOS tokens (expected <|startoftext|> and <|endoftext|>)',
    );
  }
  const configured = config.model_max_length;
  const maxLength =
    typeof configured === 'number' && Number.isInteger(configured) && configured >= 2 && configured <= 1024
      ? configured
      : DEFAULT_MAX_LENGTH;

  return {
    maxLength,
    bosId,
    eosId,
    padId,
    encode(text) {
      const ids = tokenizer.encode(text, { add_special_tokens: true });
      const truncated = ids.length > maxLength;
      if (truncated) {
        // Keep BOS and the first maxLength-2 tokens, then EOS: the text encoder pools at EOS.
        ids.length = maxLength - 1;
        ids.push(eosId);
      }
      const length = ids.length;
      while (ids.length < maxLength) ids.push(padId);
      return { ids, truncated, length };
    },
  };
}
