// The demo translator: a tiny Marian (opus-mt-ru-en-shaped) model in the layout transformers.js
// loads, with random weights (its "translations" are deterministic Latin-script gibberish), so the
// Russian→English path runs and is tested with no download.

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MARIAN_FILES } from '../marian-layout.ts';
import { demoVocabulary, EOS, PAD, type Piece, UNK, WORD_START } from './marian-vocab.ts';
import { ensureFolder, jsonText as json } from './model-folder.ts';
import { createGraph, filled, type GraphBuilder, gaussian } from './onnx-graph.ts';

export const DEMO_MARIAN = Object.freeze({
  dModel: 32,
  heads: 4,
  ffnDim: 64,
  encoderLayers: 2,
  decoderLayers: 2,
  maxPositions: 512,
});

const HEAD_DIM = DEMO_MARIAN.dModel / DEMO_MARIAN.heads;
/** Added to masked attention scores (Marian uses the dtype's minimum; any large negative works). */
const MASKED = -1e9;
/** Logit of `</s>` rises by this much per output token beyond the input's length. */
const EOS_LENGTH_PRIOR = 4;
/** Seed of the token embeddings: both files must hold the same table (Marian shares it). */
const EMBEDDING_SEED = 7001;

/** Graph helpers for one file; `seed` advances so each weight gets its own stream. */
function marianOps(g: GraphBuilder, firstSeed: number, vocabSize: number) {
  const { dModel, heads } = DEMO_MARIAN;
  let seed = firstSeed;
  const scalarInt = (value: number) => g.op('Squeeze', [g.ints([value]), g.ints([0])]);

  const ops = {
    embeddings(): string {
      return g.weight(
        'model.shared.weight',
        [vocabSize, dModel],
        gaussian(vocabSize * dModel, EMBEDDING_SEED, 0.5),
      );
    },
    linear(x: string, name: string, inDim: number, outDim: number): string {
      const weight = g.weight(
        `${name}.weight`,
        [inDim, outDim],
        gaussian(inDim * outDim, seed++, 1 / Math.sqrt(inDim)),
      );
      const bias = g.weight(`${name}.bias`, [outDim], gaussian(outDim, seed++, 0.02));
      return g.op('Add', [g.op('MatMul', [x, weight]), bias]);
    },
    layerNorm(x: string, name: string): string {
      return g.op(
        'LayerNormalization',
        [
          x,
          g.weight(`${name}.weight`, [dModel], filled(dModel, 1)),
          g.weight(`${name}.bias`, [dModel], filled(dModel, 0)),
        ],
        { axis: { int: -1 }, epsilon: { float: 1e-5 } },
      );
    },
    /** [batch, seq, d_model] → [batch, heads, seq, head_dim] */
    splitHeads(x: string): string {
      const reshaped = g.op('Reshape', [x, g.ints([0, 0, heads, HEAD_DIM])]);
      return g.op('Transpose', [reshaped], { perm: { ints: [0, 2, 1, 3] } });
    },
    mergeHeads(x: string): string {
      const transposed = g.op('Transpose', [x], { perm: { ints: [0, 2, 1, 3] } });
      return g.op('Reshape', [transposed, g.ints([0, 0, dModel])]);
    },
    /** softmax(q·kᵀ/√head_dim + bias)·v over [batch, heads, seq, head_dim] tensors. */
    attention(q: string, k: string, v: string, bias: string): string {
      const scores = g.op('Mul', [
        g.op('MatMul', [q, g.op('Transpose', [k], { perm: { ints: [0, 1, 3, 2] } })]),
        g.scalar(1 / Math.sqrt(HEAD_DIM)),
      ]);
      const weights = g.op('Softmax', [g.op('Add', [scores, bias])], { axis: { int: -1 } });
      return g.op('MatMul', [weights, v]);
    },
    feedForward(x: string, name: string): string {
      const hidden = ops.linear(x, `${name}.fc1`, dModel, DEMO_MARIAN.ffnDim);
      const swish = g.op('Mul', [hidden, g.op('Sigmoid', [hidden])]);
      return ops.linear(swish, `${name}.fc2`, DEMO_MARIAN.ffnDim, dModel);
    },
    /** Marian's static sinusoidal positions for `start … start+length-1` (scalars) → [length, d_model]. */
    positions(start: string, length: string): string {
      const range = g.op('Range', [start, g.op('Add', [start, length]), scalarInt(1)]);
      const angles = g.op('Mul', [
        g.op('Unsqueeze', [g.op('Cast', [range], { to: { int: 1 } }), g.ints([1])]),
        g.weight('positions.inverse_frequency', [1, dModel / 2], inverseFrequencies()),
      ]);
      return g.op('Concat', [g.op('Sin', [angles]), g.op('Cos', [angles])], { axis: { int: 1 } });
    },
    /** (1 − mask)·MASKED as [batch, 1, 1, seq], added to scores to hide padding. */
    paddingBias(mask: string): string {
      const masked = g.op('Sub', [g.scalar(1), g.op('Cast', [mask], { to: { int: 1 } })]);
      return g.op('Unsqueeze', [g.op('Mul', [masked, g.scalar(MASKED)]), g.ints([1, 2])]);
    },
    /** Sequence length (axis 1 of a [batch, seq] tensor, or `axis`) as an int64 scalar. */
    length(x: string, axis = 1): string {
      return g.op('Squeeze', [
        g.op('Shape', [x], { start: { int: axis }, end: { int: axis + 1 } }),
        g.ints([0]),
      ]);
    },
    scalarInt,
    embed(ids: string, table: string, start: string): string {
      const tokens = g.op('Mul', [g.op('Gather', [table, ids]), g.scalar(Math.sqrt(dModel))]);
      return g.op('Add', [tokens, ops.positions(start, ops.length(ids))]);
    },
  };
  return ops;
}

function inverseFrequencies(): Float32Array {
  const half = DEMO_MARIAN.dModel / 2;
  const values = new Float32Array(half);
  for (let i = 0; i < half; i++) values[i] = 1 / 10000 ** (i / half);
  return values;
}

/** Inputs input_ids, attention_mask (int64 [batch_size, encoder_sequence_length]); output last_hidden_state. */
export function marianEncoderOnnx(vocabSize: number): Uint8Array {
  const { dModel, encoderLayers } = DEMO_MARIAN;
  const g = createGraph('marian_encoder');
  const ops = marianOps(g, 7100, vocabSize);
  const ids = g.input('input_ids', 'int64', ['batch_size', 'encoder_sequence_length']);
  const mask = g.input('attention_mask', 'int64', ['batch_size', 'encoder_sequence_length']);
  const bias = ops.paddingBias(mask);
  let x = ops.embed(ids, ops.embeddings(), ops.scalarInt(0));
  for (let layer = 0; layer < encoderLayers; layer++) {
    const name = `encoder.layers.${layer}`;
    const [q, k, v] = ['q_proj', 'k_proj', 'v_proj'].map((proj) =>
      ops.splitHeads(ops.linear(x, `${name}.self_attn.${proj}`, dModel, dModel)),
    );
    const attended = ops.linear(
      ops.mergeHeads(ops.attention(q, k, v, bias)),
      `${name}.self_attn.out_proj`,
      dModel,
      dModel,
    );
    const h = ops.layerNorm(g.op('Add', [x, attended]), `${name}.self_attn_layer_norm`);
    x = ops.layerNorm(g.op('Add', [h, ops.feedForward(h, name)]), `${name}.final_layer_norm`);
  }
  g.op('Identity', [x], {}, 'last_hidden_state');
  g.output('last_hidden_state', 'float32', ['batch_size', 'encoder_sequence_length', dModel]);
  return g.encode();
}

/** The names optimum gives the cache tensors of decoder layer `i`. */
export function cacheNames(i: number) {
  return {
    pastDecoderKey: `past_key_values.${i}.decoder.key`,
    pastDecoderValue: `past_key_values.${i}.decoder.value`,
    pastEncoderKey: `past_key_values.${i}.encoder.key`,
    pastEncoderValue: `past_key_values.${i}.encoder.value`,
    presentDecoderKey: `present.${i}.decoder.key`,
    presentDecoderValue: `present.${i}.decoder.value`,
    presentEncoderKey: `present.${i}.encoder.key`,
    presentEncoderValue: `present.${i}.encoder.value`,
  };
}

/**
 * The merged decoder (optimum's `decoder_model_merged.onnx`): inputs encoder_attention_mask,
 * input_ids, encoder_hidden_states, past_key_values.{i}.{decoder,encoder}.{key,value},
 * use_cache_branch; outputs logits and present.{i}.{decoder,encoder}.{key,value}.
 */
export function marianDecoderOnnx(vocab: readonly Piece[]): Uint8Array {
  const { dModel, heads, decoderLayers } = DEMO_MARIAN;
  const vocabSize = vocab.length;
  const g = createGraph('marian_decoder_merged');
  const ops = marianOps(g, 7500, vocabSize);
  const cacheDims = (seq: string) => ['batch_size', heads, seq, HEAD_DIM];

  const encoderMask = g.input('encoder_attention_mask', 'int64', ['batch_size', 'encoder_sequence_length']);
  const ids = g.input('input_ids', 'int64', ['batch_size', 'decoder_sequence_length']);
  const encoderStates = g.input('encoder_hidden_states', 'float32', [
    'batch_size',
    'encoder_sequence_length',
    dModel,
  ]);
  for (let i = 0; i < decoderLayers; i++) {
    const names = cacheNames(i);
    g.input(names.pastDecoderKey, 'float32', cacheDims('past_decoder_sequence_length'));
    g.input(names.pastDecoderValue, 'float32', cacheDims('past_decoder_sequence_length'));
    g.input(names.pastEncoderKey, 'float32', cacheDims('encoder_sequence_length_out'));
    g.input(names.pastEncoderValue, 'float32', cacheDims('encoder_sequence_length_out'));
  }
  const useCache = g.input('use_cache_branch', 'bool', [1]);

  // Cross-attention keys/values: projected from the encoder states on the first step, passed
  // through from the cache afterwards (optimum's merged decoder does the same with an If).
  const fromCache = g.subgraph('use_cache');
  const fromEncoder = g.subgraph('compute_encoder_cache');
  const encoderCache: string[] = [];
  for (let i = 0; i < decoderLayers; i++) {
    const names = cacheNames(i);
    for (const [past, present, proj] of [
      [names.pastEncoderKey, names.presentEncoderKey, 'k_proj'],
      [names.pastEncoderValue, names.presentEncoderValue, 'v_proj'],
    ] as const) {
      const cached = fromCache.op('Identity', [past]);
      fromCache.output(cached, 'float32', cacheDims('encoder_sequence_length_out'));
      // Weights live in the outer graph; the branch reads them by name.
      const computed = fromEncoder.op(
        'Transpose',
        [
          fromEncoder.op('Reshape', [
            fromEncoder.op('Add', [
              fromEncoder.op('MatMul', [
                encoderStates,
                g.weight(
                  `decoder.layers.${i}.encoder_attn.${proj}.weight`,
                  [dModel, dModel],
                  gaussian(
                    dModel * dModel,
                    7400 + 2 * i + (proj === 'k_proj' ? 0 : 1),
                    1 / Math.sqrt(dModel),
                  ),
                ),
              ]),
              g.weight(`decoder.layers.${i}.encoder_attn.${proj}.bias`, [dModel], filled(dModel, 0)),
            ]),
            fromEncoder.ints([0, 0, heads, HEAD_DIM]),
          ]),
        ],
        { perm: { ints: [0, 2, 1, 3] } },
      );
      fromEncoder.output(computed, 'float32', cacheDims('encoder_sequence_length_out'));
      encoderCache.push(present);
    }
  }
  g.node('If', [useCache], encoderCache, {
    then_branch: { graph: fromCache.toGraph() },
    else_branch: { graph: fromEncoder.toGraph() },
  });

  // Positions continue after the cached tokens; the causal mask lets query position p see keys ≤ p.
  const pastLength = ops.length(cacheNames(0).pastDecoderKey, 2);
  const length = ops.length(ids);
  const total = g.op('Add', [pastLength, length]);
  const queryPositions = g.op('Range', [pastLength, total, ops.scalarInt(1)]);
  const keyPositions = g.op('Range', [ops.scalarInt(0), total, ops.scalarInt(1)]);
  const causalBias = g.op('Mul', [
    g.op(
      'Cast',
      [
        g.op('Greater', [
          g.op('Unsqueeze', [keyPositions, g.ints([0])]),
          g.op('Unsqueeze', [queryPositions, g.ints([1])]),
        ]),
      ],
      { to: { int: 1 } },
    ),
    g.scalar(MASKED),
  ]);
  const crossBias = ops.paddingBias(encoderMask);

  const table = ops.embeddings();
  let y = ops.embed(ids, table, pastLength);
  for (let i = 0; i < decoderLayers; i++) {
    const name = `decoder.layers.${i}`;
    const names = cacheNames(i);
    const [q, kNew, vNew] = ['q_proj', 'k_proj', 'v_proj'].map((proj) =>
      ops.splitHeads(ops.linear(y, `${name}.self_attn.${proj}`, dModel, dModel)),
    );
    const k = g.op('Concat', [names.pastDecoderKey, kNew], { axis: { int: 2 } }, names.presentDecoderKey);
    const v = g.op('Concat', [names.pastDecoderValue, vNew], { axis: { int: 2 } }, names.presentDecoderValue);
    const selfAttended = ops.linear(
      ops.mergeHeads(ops.attention(q, k, v, causalBias)),
      `${name}.self_attn.out_proj`,
      dModel,
      dModel,
    );
    y = ops.layerNorm(g.op('Add', [y, selfAttended]), `${name}.self_attn_layer_norm`);

    const crossQ = ops.splitHeads(ops.linear(y, `${name}.encoder_attn.q_proj`, dModel, dModel));
    const crossAttended = ops.linear(
      ops.mergeHeads(ops.attention(crossQ, names.presentEncoderKey, names.presentEncoderValue, crossBias)),
      `${name}.encoder_attn.out_proj`,
      dModel,
      dModel,
    );
    y = ops.layerNorm(g.op('Add', [y, crossAttended]), `${name}.encoder_attn_layer_norm`);
    y = ops.layerNorm(g.op('Add', [y, ops.feedForward(y, name)]), `${name}.final_layer_norm`);
  }

  // Marian ties lm_head to the embeddings; with random weights plus the residual path that makes
  // every token predict itself (a loop of one word), so the demo has its own output projection.
  const projected = g.op('MatMul', [
    y,
    g.weight('lm_head.weight', [dModel, vocabSize], gaussian(dModel * vocabSize, 7300, 0.5)),
  ]);
  const biased = g.op('Add', [projected, g.weight('final_logits_bias', [vocabSize], finalLogitsBias(vocab))]);
  // Length prior: EOS_LENGTH_PRIOR · (position + 1 − source tokens) on `</s>` only.
  const sourceLength = g.op('ReduceSum', [g.op('Cast', [encoderMask], { to: { int: 1 } }), g.ints([1])], {
    keepdims: { int: 1 },
  });
  const progress = g.op('Sub', [
    g.op('Unsqueeze', [
      g.op('Add', [g.op('Cast', [queryPositions], { to: { int: 1 } }), g.scalar(1)]),
      g.ints([0]),
    ]),
    sourceLength,
  ]);
  const eosOneHot = filled(vocabSize, 0);
  eosOneHot[vocab.findIndex((p) => p.piece === EOS)] = EOS_LENGTH_PRIOR;
  const prior = g.op('Mul', [
    g.op('Unsqueeze', [progress, g.ints([2])]),
    g.weight('eos_length_prior', [vocabSize], eosOneHot),
  ]);
  g.op('Add', [biased, prior], {}, 'logits');

  g.output('logits', 'float32', ['batch_size', 'decoder_sequence_length', vocabSize]);
  for (let i = 0; i < decoderLayers; i++) {
    const names = cacheNames(i);
    g.output(names.presentDecoderKey, 'float32', cacheDims('present_decoder_sequence_length'));
    g.output(names.presentDecoderValue, 'float32', cacheDims('present_decoder_sequence_length'));
    g.output(names.presentEncoderKey, 'float32', cacheDims('encoder_sequence_length_out'));
    g.output(names.presentEncoderValue, 'float32', cacheDims('encoder_sequence_length_out'));
  }
  return g.encode();
}

/** Demo-only: Latin pieces and `</s>` are reachable, Cyrillic, digits, punctuation and specials are not. */
function finalLogitsBias(vocab: readonly Piece[]): Float32Array {
  return Float32Array.from(vocab, ({ piece, kind }) => {
    if (piece === EOS) return 0;
    if (kind !== 'latin') return -100;
    const letters = piece.startsWith(WORD_START) ? piece.length - 1 : piece.length;
    if (letters === 1) return -4;
    return piece.startsWith(WORD_START) ? 1 : -1;
  });
}

function ids(vocab: readonly Piece[]) {
  const id = (piece: string) => vocab.findIndex((p) => p.piece === piece);
  return { eos: id(EOS), unk: id(UNK), pad: id(PAD) };
}

/** config.json as the opus-mt-ru-en export has it, with the demo's sizes. */
export function marianConfig(vocab: readonly Piece[]): Record<string, unknown> {
  const { eos, pad } = ids(vocab);
  const { dModel, heads, ffnDim, encoderLayers, decoderLayers, maxPositions } = DEMO_MARIAN;
  return {
    _name_or_path: 'easel/demo-opus-mt-ru-en',
    _easel_demo: true,
    activation_dropout: 0,
    activation_function: 'swish',
    architectures: ['MarianMTModel'],
    attention_dropout: 0,
    bad_words_ids: [[pad]],
    bos_token_id: 0,
    classifier_dropout: 0,
    d_model: dModel,
    decoder_attention_heads: heads,
    decoder_ffn_dim: ffnDim,
    decoder_layerdrop: 0,
    decoder_layers: decoderLayers,
    decoder_start_token_id: pad,
    decoder_vocab_size: vocab.length,
    dropout: 0.1,
    encoder_attention_heads: heads,
    encoder_ffn_dim: ffnDim,
    encoder_layerdrop: 0,
    encoder_layers: encoderLayers,
    eos_token_id: eos,
    forced_eos_token_id: eos,
    init_std: 0.02,
    is_encoder_decoder: true,
    max_length: maxPositions,
    max_position_embeddings: maxPositions,
    model_type: 'marian',
    normalize_before: false,
    normalize_embedding: false,
    num_beams: 1,
    num_hidden_layers: encoderLayers,
    pad_token_id: pad,
    scale_embedding: true,
    share_encoder_decoder_embeddings: true,
    static_position_embeddings: true,
    transformers_version: '4.34.0',
    use_cache: true,
    vocab_size: vocab.length,
  };
}

export function marianGenerationConfig(vocab: readonly Piece[]): Record<string, unknown> {
  const { eos, pad } = ids(vocab);
  return {
    bad_words_ids: [[pad]],
    bos_token_id: 0,
    decoder_start_token_id: pad,
    eos_token_id: eos,
    forced_eos_token_id: eos,
    max_length: DEMO_MARIAN.maxPositions,
    num_beams: 1,
    pad_token_id: pad,
    transformers_version: '4.34.0',
  };
}

/** tokenizer.json: Unigram over the shared vocabulary, Metaspace pre-tokenizer/decoder, `</s>` appended. */
export function marianTokenizerJson(vocab: readonly Piece[]): Record<string, unknown> {
  const { eos, unk, pad } = ids(vocab);
  const special = (id: number) => ({
    id,
    content: vocab[id].piece,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(eos), special(unk), special(pad)],
    normalizer: { type: 'NFKC' },
    pre_tokenizer: { type: 'Metaspace', replacement: WORD_START, prepend_scheme: 'always', split: true },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: EOS, type_id: 0 } }],
      pair: [
        { Sequence: { id: 'A', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 0 } },
        { SpecialToken: { id: EOS, type_id: 0 } },
      ],
      special_tokens: { [EOS]: { id: EOS, ids: [eos], tokens: [EOS] } },
    },
    decoder: { type: 'Metaspace', replacement: WORD_START, prepend_scheme: 'always', split: true },
    model: {
      type: 'Unigram',
      unk_id: unk,
      vocab: vocab.map(({ piece, score }) => [piece, score]),
      byte_fallback: false,
    },
  };
}

export function marianTokenizerConfig(): Record<string, unknown> {
  return {
    tokenizer_class: 'MarianTokenizer',
    model_max_length: DEMO_MARIAN.maxPositions,
    eos_token: EOS,
    unk_token: UNK,
    pad_token: PAD,
    source_lang: 'ru',
    target_lang: 'en',
    separate_vocabs: false,
    clean_up_tokenization_spaces: true,
  };
}

/** Writes the demo translator into `dir` (created if needed); existing files are overwritten. */
export async function writeDemoTranslator(dir: string): Promise<void> {
  const vocab = demoVocabulary();
  await mkdir(join(dir, 'onnx'), { recursive: true });
  await Promise.all([
    writeFile(join(dir, MARIAN_FILES.generationConfig), json(marianGenerationConfig(vocab))),
    writeFile(join(dir, MARIAN_FILES.tokenizer), json(marianTokenizerJson(vocab))),
    writeFile(join(dir, MARIAN_FILES.tokenizerConfig), json(marianTokenizerConfig())),
    writeFile(join(dir, MARIAN_FILES.encoder), marianEncoderOnnx(vocab.length)),
    writeFile(join(dir, MARIAN_FILES.decoder), marianDecoderOnnx(vocab)),
  ]);
  // Written last: its presence is what marks the folder as a complete model.
  await writeFile(join(dir, MARIAN_FILES.config), json(marianConfig(vocab)));
}

/** Writes the demo translator into `dir` unless it is already there (atomically; see model-folder.ts). */
export function ensureDemoTranslator(dir: string): Promise<string> {
  return ensureFolder(dir, MARIAN_FILES.config, 'demo translator', (staging) => writeDemoTranslator(staging));
}
