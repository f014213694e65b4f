// The demo Kandinsky models: tiny Kandinsky 2.1 / 2.2 combined pipelines (prior + decoder) in the
// ONNX layout of /work/shared/notes/kandinsky.md §8, with the real input/output names, dtypes and
// dynamic axes and seeded random weights (their images mean nothing), so the Kandinsky path runs
// and is tested with no download and no GPU. Every network is small but reads every one of its
// inputs (a pipeline that drops or swaps one gets a different image), and the UNet keeps its real
// internal shape in miniature: timestep + text/image embedding, image tokens + text tokens as the
// cross-attention context, ε in channels 0–3 and a variance in 4–7. Its ε is that of a denoiser
// whose x0 guess is bounded, so a real DDIM/DDPM loop ends on latents of a sane size.
//
// Not written (all optional for a pipeline): prior_image_encoder/model.onnx (the pipeline only
// needs image_encoder(zeros), which zero_image_embeds.json holds), tokenizer/sentencepiece.bpe.model
// (the fast tokenizer reads tokenizer.json only) and the weights.pb external-data files (the demo
// weights are small enough to sit inside model.onnx).

import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ensureFolder, jsonText as json } from './model-folder.ts';
import { createGraph, filled, type GraphBuilder, gaussian } from './onnx-graph.ts';
import {
  BOS,
  EOS,
  MASK,
  PAD,
  type ScoredPiece,
  UNK,
  WORD_START,
  XLMR_SPECIAL_IDS,
  xlmrVocabulary,
} from './xlmr-vocab.ts';

export type KandinskyVersion = '2.1' | '2.2';

export interface DemoKandinskyOptions {
  version: KandinskyVersion;
}

/** The demo's sizes (the real ones in comments: 2.1 / 2.2). */
export const DEMO_KANDINSKY = Object.freeze({
  /** D: CLIP embedding width, for the prior and the image/text embeds (768 / 1280). */
  embeddingDim: 32,
  /** H: width of the MCLIP text encoder's hidden states, 2.1 only (1024, XLM-R-large). */
  textHiddenDim: 48,
  /** Tokens per prompt for both tokenizers and encoders. */
  maxLength: 77,
  /** CLIP BPE vocabulary of the prior tokenizer (the real one). */
  clipVocabSize: 49408,
  /** Rank of the factorised CLIP token embedding (49408×8, then 8→D) keeps the file small. */
  clipEmbeddingRank: 8,
  latentChannels: 4,
  /** ε (0–3) and the learned-range variance (4–7). */
  unetOutChannels: 8,
  /** Channels inside the demo UNet (the real one has 384…1536). */
  unetWidth: 16,
  /** Image-embedding tokens in the UNet's context: 10 (2.1 text_image_proj) or 32 (2.2 image_proj). */
  unetImageTokens: { '2.1': 10, '2.2': 32 } as const,
  /** Pixels per latent cell, each way (the real MoVQ's 4 blocks give 8). */
  movqScale: 8,
  movqWidth: 16,
});

const D = DEMO_KANDINSKY.embeddingDim;
const H = DEMO_KANDINSKY.textHiddenDim;
const L = DEMO_KANDINSKY.maxLength;
const C = DEMO_KANDINSKY.unetWidth;

/** Files of the layout, relative to the model folder. */
export const KANDINSKY_DEMO_FILES = Object.freeze({
  modelIndex: 'model_index.json',
  priorTokenizer: 'prior_tokenizer',
  priorTextEncoder: 'prior_text_encoder/model.onnx',
  zeroImageEmbeds: 'prior_image_encoder/zero_image_embeds.json',
  prior: 'prior_prior/model.onnx',
  priorConfig: 'prior_prior/config.json',
  clipStats: 'prior_prior/clip_stats.json',
  priorScheduler: 'prior_scheduler/scheduler_config.json',
  tokenizer: 'tokenizer',
  textEncoder: 'text_encoder/model.onnx',
  textEncoderConfig: 'text_encoder/config.json',
  unet: 'unet/model.onnx',
  unetConfig: 'unet/config.json',
  movqDecoder: 'movq_decoder/model.onnx',
  movqConfig: 'movq_decoder/config.json',
  scheduler: 'scheduler/scheduler_config.json',
});

const DIFFUSERS_VERSION = '0.17.0';
const CLIP_TOKENIZER_ASSETS = new URL('../assets/clip-tokenizer/', import.meta.url);
/** pytorch's masked-attention bias in PriorTransformer: (1 − mask)·−10000. */
const PRIOR_MASK_BIAS = -10000;
const TRAIN_STEPS = 1000;

/** ᾱ of the decoder schedule (linear β 0.00085→0.012 over 1000 steps), in float32 as torch has it. */
function decoderAlphaBar(): Float32Array {
  const alphaBar = new Float32Array(TRAIN_STEPS);
  let product = 1;
  for (let i = 0; i < TRAIN_STEPS; i++) {
    const beta = Math.fround(0.00085 + ((0.012 - 0.00085) * i) / (TRAIN_STEPS - 1));
    product = Math.fround(product * Math.fround(1 - beta));
    alphaBar[i] = product;
  }
  return alphaBar;
}

/** Graph helpers with a running seed, so each weight has its own seeded stream. */
function kandinskyOps(g: GraphBuilder, firstSeed: number) {
  let seed = firstSeed;
  const random = (name: string, dims: number[], scale: number) =>
    g.weight(
      name,
      dims,
      gaussian(
        dims.reduce((a, b) => a * b, 1),
        seed++,
        scale,
      ),
    );
  const ops = {
    random,
    linear(x: string, name: string, inDim: number, outDim: number, scale = 1 / Math.sqrt(inDim)): string {
      const weight = random(`${name}.weight`, [inDim, outDim], scale);
      return g.op('Add', [g.op('MatMul', [x, weight]), random(`${name}.bias`, [outDim], 0.02)]);
    },
    silu(x: string): string {
      return g.op('Mul', [x, g.op('Sigmoid', [x])]);
    },
    layerNorm(x: string, name: string, dim: number): string {
      return g.op(
        'LayerNormalization',
        [
          x,
          g.weight(`${name}.weight`, [dim], filled(dim, 1)),
          g.weight(`${name}.bias`, [dim], filled(dim, 0)),
        ],
        { axis: { int: -1 }, epsilon: { float: 1e-5 } },
      );
    },
    conv(x: string, name: string, outC: number, inC: number, kernel: 1 | 3, scale?: number): string {
      const weight = random(
        `${name}.weight`,
        [outC, inC, kernel, kernel],
        scale ?? 1 / Math.sqrt(inC * kernel * kernel),
      );
      const pad = (kernel - 1) / 2;
      return g.op('Conv', [x, weight, random(`${name}.bias`, [outC], 0.02)], {
        pads: { ints: [pad, pad, pad, pad] },
      });
    },
    /**
     * diffusers' Timesteps (flip_sin_to_cos, shift 0) + TimestepEmbedding: float t [batch] →
     * [cos | sin](t·10000^(−i/half)) → Linear → SiLU → Linear → [batch, dim].
     */
    timestepEmbedding(t: string, name: string, sinusoidDim: number, dim: number): string {
      const half = sinusoidDim / 2;
      const frequencies = Float32Array.from({ length: half }, (_, i) =>
        Math.exp((-Math.log(10000) * i) / half),
      );
      const angles = g.op('Mul', [
        g.op('Unsqueeze', [t, g.ints([1])]),
        g.weight(`${name}.frequencies`, [1, half], frequencies),
      ]);
      const sinusoid = g.op('Concat', [g.op('Cos', [angles]), g.op('Sin', [angles])], { axis: { int: 1 } });
      const hidden = ops.silu(ops.linear(sinusoid, `${name}.linear_1`, sinusoidDim, dim));
      return ops.linear(hidden, `${name}.linear_2`, dim, dim);
    },
    /** Σ x·mask / max(Σ mask, 1) over axis 1 of [batch, seq, dim], with mask [batch, seq, 1] float. */
    maskedMean(x: string, mask: string): string {
      const total = g.op('ReduceSum', [g.op('Mul', [x, mask]), g.ints([1])], { keepdims: { int: 0 } });
      const count = g.op('Max', [
        g.op('ReduceSum', [mask, g.ints([1])], { keepdims: { int: 0 } }),
        g.scalar(1),
      ]);
      return g.op('Div', [total, count]);
    },
    /** Single-head attention softmax(q·kᵀ/√dim + bias)·v over [batch, n, dim] tensors. */
    attention(q: string, k: string, v: string, dim: number, bias?: string): string {
      let scores = g.op('Mul', [
        g.op('MatMul', [q, g.op('Transpose', [k], { perm: { ints: [0, 2, 1] } })]),
        g.scalar(1 / Math.sqrt(dim)),
      ]);
      if (bias) scores = g.op('Add', [scores, bias]);
      return g.op('MatMul', [g.op('Softmax', [scores], { axis: { int: -1 } }), v]);
    },
  };
  return ops;
}

/**
 * CLIPTextModelWithProjection (the prior's text encoder), called without a mask:
 * input_ids int64 [batch, 77] → text_embeds [batch, D], last_hidden_state [batch, 77, D].
 * A causal running mean stands in for CLIP's causal attention, and text_embeds is the projected
 * state at the first highest id (CLIP's EOS pooling), so it depends on the whole prompt.
 */
export function priorTextEncoderOnnx(): Uint8Array {
  const { clipVocabSize, clipEmbeddingRank } = DEMO_KANDINSKY;
  const g = createGraph('prior_text_encoder');
  const ops = kandinskyOps(g, 8100);
  const ids = g.input('input_ids', 'int64', ['batch', L]);
  const tokens = g.op('MatMul', [
    g.op('Gather', [ops.random('token_embedding', [clipVocabSize, clipEmbeddingRank], 1), ids]),
    ops.random('token_projection', [clipEmbeddingRank, D], 0.35),
  ]);
  const embedded = g.op('Add', [tokens, ops.random('position_embedding', [L, D], 0.2)]);
  const runningMean = g.op('Mul', [
    g.op('CumSum', [embedded, g.ints([1])]),
    g.weight(
      'inverse_position_count',
      [L, 1],
      Float32Array.from({ length: L }, (_, i) => 1 / (i + 1)),
    ),
  ]);
  const hidden = g.op('Tanh', [
    g.op('Add', [ops.linear(embedded, 'mlp_token', D, D), ops.linear(runningMean, 'mlp_context', D, D)]),
  ]);
  g.op('Identity', [hidden], {}, 'last_hidden_state');
  const eosPosition = g.op('ArgMax', [g.op('Cast', [ids], { to: { int: 1 } })], {
    axis: { int: 1 },
    keepdims: { int: 1 },
  });
  const positions = g.ints(Array.from({ length: L }, (_, i) => i));
  const eosOneHot = g.op('Cast', [g.op('Equal', [positions, eosPosition])], { to: { int: 1 } });
  const pooled = g.op('Squeeze', [
    g.op('MatMul', [g.op('Unsqueeze', [eosOneHot, g.ints([1])]), hidden]),
    g.ints([1]),
  ]);
  g.op('MatMul', [pooled, ops.random('text_projection', [D, D], 1 / Math.sqrt(D))], {}, 'text_embeds');
  g.output('text_embeds', 'float32', ['batch', D]);
  g.output('last_hidden_state', 'float32', ['batch', L, D]);
  return g.encode();
}

/**
 * MultilingualCLIP (2.1's text encoder): input_ids, attention_mask int64 [batch, 77] →
 * text_embeds [batch, D] (Linear over the masked mean, as MCLIP does), last_hidden_state
 * [batch, 77, H]. Each hidden state mixes its token with the masked mean of the prompt.
 */
export function textEncoderOnnx(vocabSize: number): Uint8Array {
  const g = createGraph('text_encoder');
  const ops = kandinskyOps(g, 8200);
  const ids = g.input('input_ids', 'int64', ['batch', L]);
  const mask = g.input('attention_mask', 'int64', ['batch', L]);
  const maskColumn = g.op('Unsqueeze', [g.op('Cast', [mask], { to: { int: 1 } }), g.ints([2])]);
  const embedded = g.op('Add', [
    g.op('Gather', [ops.random('word_embeddings', [vocabSize, H], 1), ids]),
    ops.random('position_embeddings', [L, H], 0.2),
  ]);
  const context = g.op('Unsqueeze', [ops.maskedMean(embedded, maskColumn), g.ints([1])]);
  const hidden = g.op('Tanh', [
    g.op('Add', [ops.linear(embedded, 'mlp_token', H, H), ops.linear(context, 'mlp_context', H, H)]),
  ]);
  g.op('Identity', [hidden], {}, 'last_hidden_state');
  g.op(
    'Identity',
    [ops.linear(ops.maskedMean(hidden, maskColumn), 'LinearTransformation', H, D)],
    {},
    'text_embeds',
  );
  g.output('text_embeds', 'float32', ['batch', D]);
  g.output('last_hidden_state', 'float32', ['batch', L, H]);
  return g.encode();
}

/**
 * PriorTransformer in miniature: a query from (x_t, the CLIP text embedding, the timestep) attends
 * over the text tokens under the text mask, then a residual MLP predicts x0 (normalised space):
 * hidden_states [batch, D], timestep f32 [batch], proj_embedding [batch, D],
 * encoder_hidden_states [batch, 77, D], attention_mask bool [batch, 77] →
 * predicted_image_embedding [batch, D].
 */
export function priorOnnx(): Uint8Array {
  const g = createGraph('prior');
  const ops = kandinskyOps(g, 8300);
  const x = g.input('hidden_states', 'float32', ['batch', D]);
  const timestep = g.input('timestep', 'float32', ['batch']);
  const proj = g.input('proj_embedding', 'float32', ['batch', D]);
  const text = g.input('encoder_hidden_states', 'float32', ['batch', L, D]);
  const mask = g.input('attention_mask', 'bool', ['batch', L]);

  const query = g.op('Add', [
    g.op('Add', [ops.linear(x, 'proj_in', D, D), ops.linear(proj, 'embedding_proj', D, D)]),
    ops.timestepEmbedding(timestep, 'time_embedding', D, D),
  ]);
  const bias = g.op('Unsqueeze', [
    g.op('Mul', [
      g.op('Sub', [g.scalar(1), g.op('Cast', [mask], { to: { int: 1 } })]),
      g.scalar(PRIOR_MASK_BIAS),
    ]),
    g.ints([1]),
  ]);
  const keys = ops.linear(text, 'attn.to_k', D, D);
  const values = ops.linear(text, 'attn.to_v', D, D);
  const attended = g.op('Squeeze', [
    ops.attention(
      g.op('Unsqueeze', [ops.linear(query, 'attn.to_q', D, D), g.ints([1])]),
      keys,
      values,
      D,
      bias,
    ),
    g.ints([1]),
  ]);
  const h = g.op('Add', [query, ops.linear(attended, 'attn.to_out', D, D)]);
  const ff = ops.linear(
    ops.silu(ops.linear(ops.layerNorm(h, 'norm1', D), 'ff.fc1', D, 2 * D)),
    'ff.fc2',
    2 * D,
    D,
  );
  const out = ops.linear(ops.layerNorm(g.op('Add', [h, ff]), 'norm_out', D), 'proj_to_clip_embeddings', D, D);
  g.op('Identity', [out], {}, 'predicted_image_embedding');
  g.output('predicted_image_embedding', 'float32', ['batch', D]);
  return g.encode();
}

/**
 * The decoder UNet in miniature. 2.1: sample [batch,4,height,width], timestep f32 [batch],
 * encoder_hidden_states [batch,77,H], text_embeds [batch,D], image_embeds [batch,D];
 * 2.2: sample, timestep, image_embeds → out_sample [batch,8,height,width].
 * emb = t_emb + (2.1: LN(Linear(text_embeds)) +) Linear(image_embeds) (2.2: LN(Linear(image_embeds)))
 * is added to every channel; the context is image tokens (+ projected text states for 2.1), which
 * every pixel cross-attends to. Channels 0–3 are ε for a bounded x0 prediction, 4–7 a variance in (−1, 1).
 */
export function unetOnnx(version: KandinskyVersion): Uint8Array {
  const { latentChannels, unetOutChannels } = DEMO_KANDINSKY;
  const imageTokens = DEMO_KANDINSKY.unetImageTokens[version];
  const g = createGraph('unet');
  const ops = kandinskyOps(g, version === '2.1' ? 8400 : 8500);
  const sample = g.input('sample', 'float32', ['batch', latentChannels, 'height', 'width']);
  const timestep = g.input('timestep', 'float32', ['batch']);
  const hiddenStates = version === '2.1' ? g.input('encoder_hidden_states', 'float32', ['batch', L, H]) : '';
  const textEmbeds = version === '2.1' ? g.input('text_embeds', 'float32', ['batch', D]) : '';
  const imageEmbeds = g.input('image_embeds', 'float32', ['batch', D]);

  // Added embedding (diffusers TextImageTimeEmbedding / ImageTimeEmbedding).
  const timeEmb = ops.timestepEmbedding(timestep, 'time_embedding', 32, C);
  const addedEmb =
    version === '2.1'
      ? g.op('Add', [
          ops.layerNorm(
            ops.linear(textEmbeds, 'add_embedding.text_proj', D, C),
            'add_embedding.text_norm',
            C,
          ),
          ops.linear(imageEmbeds, 'add_embedding.text_image_proj', D, C),
        ])
      : ops.layerNorm(
          ops.linear(imageEmbeds, 'add_embedding.image_proj', D, C),
          'add_embedding.image_norm',
          C,
        );
  const emb = g.op('Add', [timeEmb, addedEmb]);

  // Context (diffusers TextImageProjection / ImageProjection): image tokens first, then text.
  const imageContext = ops.layerNorm(
    g.op('Reshape', [
      ops.linear(imageEmbeds, 'encoder_hid_proj.image_embeds', D, imageTokens * C),
      g.ints([0, imageTokens, C]),
    ]),
    'encoder_hid_proj.norm',
    C,
  );
  const context =
    version === '2.1'
      ? g.op('Concat', [imageContext, ops.linear(hiddenStates, 'encoder_hid_proj.text_proj', H, C)], {
          axis: { int: 1 },
        })
      : imageContext;

  const convIn = ops.conv(sample, 'conv_in', C, latentChannels, 3);
  const embBias = g.op('Unsqueeze', [ops.linear(ops.silu(emb), 'time_emb_proj', C, C), g.ints([2, 3])]);
  const h1 = ops.silu(g.op('Add', [convIn, embBias]));

  // Cross-attention of every pixel to the context: [batch, C, h, w] ⇄ [batch, h·w, C].
  const pixels = g.op('Transpose', [g.op('Reshape', [h1, g.ints([0, C, -1])])], {
    perm: { ints: [0, 2, 1] },
  });
  const attended = ops.attention(
    g.op('MatMul', [pixels, ops.random('attn2.to_q', [C, C], 1 / Math.sqrt(C))]),
    ops.linear(context, 'attn2.to_k', C, C),
    ops.linear(context, 'attn2.to_v', C, C),
    C,
  );
  const attendedOut = g.op('MatMul', [attended, ops.random('attn2.to_out', [C, C], 1 / Math.sqrt(C))]);
  const attendedMap = g.op('Reshape', [
    g.op('Transpose', [attendedOut], { perm: { ints: [0, 2, 1] } }),
    g.op('Shape', [h1]),
  ]);
  const h2 = g.op('Add', [h1, attendedMap]);
  const h3 = g.op('Add', [h2, ops.conv(ops.silu(h2), 'resnet.conv', C, C, 3, 0.5 / Math.sqrt(C * 9))]);
  const [x0, variance] = g.node(
    'Split',
    [
      g.op('Tanh', [ops.conv(ops.silu(h3), 'conv_out', unetOutChannels, C, 3, 2 / Math.sqrt(C * 9))]),
      g.ints([4, 4]),
    ],
    ['x0_prediction', 'variance'],
    { axis: { int: 1 } },
  );
  // ε as an ideal denoiser of x0 would give it: (x_t − √ᾱ_t·x0)/√(1 − ᾱ_t), with ᾱ from the
  // decoder schedule's own table, so a DDIM/DDPM loop lands on the (bounded) x0 prediction.
  const step = g.op(
    'Cast',
    [g.op('Min', [g.op('Max', [timestep, g.scalar(0)]), g.scalar(TRAIN_STEPS - 1)])],
    {
      to: { int: 7 },
    },
  );
  const perSample = (table: string) => g.op('Unsqueeze', [g.op('Gather', [table, step]), g.ints([1, 2, 3])]);
  const alphaBar = decoderAlphaBar();
  const sqrtAlphaBar = g.weight('sqrt_alpha_bar', [TRAIN_STEPS], alphaBar.map(Math.sqrt));
  const sqrtOneMinus = g.weight(
    'sqrt_one_minus_alpha_bar',
    [TRAIN_STEPS],
    alphaBar.map((a) => Math.sqrt(1 - a)),
  );
  const epsilon = g.op('Div', [
    g.op('Sub', [sample, g.op('Mul', [perSample(sqrtAlphaBar), x0])]),
    perSample(sqrtOneMinus),
  ]);
  g.op('Concat', [epsilon, variance], { axis: { int: 1 } }, 'out_sample');
  g.output('out_sample', 'float32', ['batch', unetOutChannels, 'height', 'width']);
  return g.encode();
}

/**
 * MoVQ decode in miniature: latent_sample [batch,4,latent_height,latent_width] → conv, nearest
 * ×8 upsampling, a smoothing conv, tanh → sample [batch,3,height,width] in (−1, 1).
 */
export function movqDecoderOnnx(): Uint8Array {
  const { latentChannels, movqScale, movqWidth } = DEMO_KANDINSKY;
  const g = createGraph('movq_decoder');
  const ops = kandinskyOps(g, 8600);
  const latent = g.input('latent_sample', 'float32', [
    'batch',
    latentChannels,
    'latent_height',
    'latent_width',
  ]);
  const hidden = ops.silu(ops.conv(latent, 'conv_in', movqWidth, latentChannels, 3));
  const rgb = ops.conv(hidden, 'to_rgb', 3, movqWidth, 1, 0.6 / Math.sqrt(movqWidth));
  // Resize inputs are [X, roi, scales]; roi must be present but empty.
  const upsampled = g.op(
    'Resize',
    [rgb, '', g.weight('scales', [4], Float32Array.of(1, 1, movqScale, movqScale))],
    {
      mode: { string: 'nearest' },
    },
  );
  // Mostly the identity: softens the 8×8 blocks' edges without washing them out.
  const smoothing = gaussian(3 * 3 * 9, 8690, 0.03);
  for (let c = 0; c < 3; c++) smoothing[c * 27 + c * 9 + 4] += 0.8;
  const smoothed = g.op('Conv', [upsampled, g.weight('conv_out.weight', [3, 3, 3, 3], smoothing)], {
    pads: { ints: [1, 1, 1, 1] },
  });
  g.op('Tanh', [smoothed], {}, 'sample');
  g.output('sample', 'float32', ['batch', 3, 'height', 'width']);
  return g.encode();
}

/** A [D] array of float32 values as JSON numbers. */
function vector(count: number, seed: number, scale: number, offset = 0): number[] {
  return Array.from(gaussian(count, seed, scale), (value) => Math.fround(value + offset));
}

/** prior_prior/clip_stats.json: un-normalisation emb = x·clip_std + clip_mean. */
export function clipStats(): { clip_mean: number[]; clip_std: number[] } {
  return { clip_mean: vector(D, 8701, 0.05), clip_std: vector(D, 8702, 0.05, 1) };
}

/** prior_image_encoder/zero_image_embeds.json: image_encoder(zeros[1,3,224,224]).image_embeds[0]. */
export function zeroImageEmbeds(): number[] {
  return vector(D, 8801, 0.5);
}

function modelIndex(version: KandinskyVersion): Record<string, unknown> {
  return {
    _class_name: version === '2.1' ? 'KandinskyCombinedPipeline' : 'KandinskyV22CombinedPipeline',
    _format: 'onnx',
    _diffusers_version: DIFFUSERS_VERSION,
    _easel_demo: true,
    prior_prior: ['diffusers', 'OnnxRuntimeModel'],
    prior_text_encoder: ['diffusers', 'OnnxRuntimeModel'],
    prior_image_encoder: ['diffusers', 'OnnxRuntimeModel'],
    prior_tokenizer: ['transformers', 'CLIPTokenizer'],
    prior_scheduler: ['diffusers', 'UnCLIPScheduler'],
    ...(version === '2.1'
      ? {
          text_encoder: ['diffusers', 'OnnxRuntimeModel'],
          tokenizer: ['transformers', 'XLMRobertaTokenizerFast'],
        }
      : {}),
    unet: ['diffusers', 'OnnxRuntimeModel'],
    movq_decoder: ['diffusers', 'OnnxRuntimeModel'],
    scheduler: ['diffusers', version === '2.1' ? 'DDIMScheduler' : 'DDPMScheduler'],
  };
}

/** kandinsky-2-1-prior/scheduler (notes §4); squaredcos_cap_v2 betas are the class default. */
function priorSchedulerConfig(): Record<string, unknown> {
  return {
    _class_name: 'UnCLIPScheduler',
    _diffusers_version: DIFFUSERS_VERSION,
    clip_sample: true,
    clip_sample_range: 10.0,
    num_train_timesteps: 1000,
    prediction_type: 'sample',
    variance_type: 'fixed_small_log',
  };
}

/** 2.1: DDIMScheduler; 2.2: DDPMScheduler with the same linear betas and fixed_small (notes §4, §7). */
function decoderSchedulerConfig(version: KandinskyVersion): Record<string, unknown> {
  const shared = {
    _diffusers_version: DIFFUSERS_VERSION,
    beta_end: 0.012,
    beta_schedule: 'linear',
    beta_start: 0.00085,
    clip_sample: false,
    clip_sample_range: 1.0,
    dynamic_thresholding_ratio: 0.995,
    num_train_timesteps: 1000,
    prediction_type: 'epsilon',
    sample_max_value: 1.0,
    steps_offset: 1,
    thresholding: false,
    timestep_spacing: 'leading',
    trained_betas: null,
  };
  return version === '2.1'
    ? { _class_name: 'DDIMScheduler', ...shared, set_alpha_to_one: false }
    : { _class_name: 'DDPMScheduler', ...shared, variance_type: 'fixed_small' };
}

function priorConfig(): Record<string, unknown> {
  return {
    _class_name: 'PriorTransformer',
    _diffusers_version: DIFFUSERS_VERSION,
    _easel_demo: true,
    added_emb_type: 'prd',
    additional_embeddings: 4,
    attention_head_dim: D,
    dropout: 0.0,
    embedding_dim: D,
    encoder_hid_proj_type: 'linear',
    norm_in_type: null,
    num_attention_heads: 1,
    num_embeddings: L,
    num_layers: 1,
    time_embed_act_fn: 'silu',
  };
}

function unetConfig(version: KandinskyVersion): Record<string, unknown> {
  return {
    _class_name: 'UNet2DConditionModel',
    _diffusers_version: DIFFUSERS_VERSION,
    _easel_demo: true,
    addition_embed_type: version === '2.1' ? 'text_image' : 'image',
    attention_head_dim: C,
    block_out_channels: [C],
    cross_attention_dim: C,
    encoder_hid_dim: version === '2.1' ? H : D,
    encoder_hid_dim_type: version === '2.1' ? 'text_image_proj' : 'image_proj',
    in_channels: DEMO_KANDINSKY.latentChannels,
    layers_per_block: 1,
    out_channels: DEMO_KANDINSKY.unetOutChannels,
    ...(version === '2.1' ? { addition_embed_type_num_heads: 1 } : {}),
  };
}

function movqConfig(): Record<string, unknown> {
  const { latentChannels, movqWidth } = DEMO_KANDINSKY;
  return {
    _class_name: 'VQModel',
    _diffusers_version: DIFFUSERS_VERSION,
    _easel_demo: true,
    // Four blocks: diffusers' movq_scale_factor is 2^(len(block_out_channels) − 1) = 8.
    block_out_channels: [movqWidth, movqWidth, movqWidth, movqWidth],
    in_channels: 3,
    latent_channels: latentChannels,
    norm_type: 'spatial',
    num_vq_embeddings: 16384,
    out_channels: 3,
    // The pipeline never applies it (notes §1); recorded as the real config has it.
    scaling_factor: 0.18215,
    vq_embed_dim: latentChannels,
  };
}

function textEncoderConfig(vocabSize: number): Record<string, unknown> {
  return {
    _easel_demo: true,
    architectures: ['MultilingualCLIP'],
    model_type: 'M-CLIP',
    modelBase: 'xlm-roberta-large',
    numDims: D,
    transformerDimensions: H,
    hidden_size: H,
    max_position_embeddings: L,
    vocab_size: vocabSize,
    bos_token_id: XLMR_SPECIAL_IDS.bos,
    pad_token_id: XLMR_SPECIAL_IDS.pad,
    eos_token_id: XLMR_SPECIAL_IDS.eos,
  };
}

/** An added (special) token as tokenizer.json lists it; `<mask>` swallows the space before it. */
function addedToken(vocab: readonly ScoredPiece[], content: string) {
  return {
    id: vocab.findIndex(([piece]) => piece === content),
    content,
    single_word: false,
    lstrip: content === MASK,
    rstrip: false,
    normalized: false,
    special: true,
  };
}

/**
 * tokenizer.json as HF tokenizers serialises XLMRobertaTokenizerFast (the legacy hub form): a
 * Unigram model, Metaspace pre-tokenizer after whitespace splitting, `<s> … </s>` added by
 * RobertaProcessing. NFKC stands in for the real `Precompiled` nmt_nfkc charsmap.
 */
export function xlmrTokenizerJson(vocab: readonly ScoredPiece[]): Record<string, unknown> {
  const metaspace = { type: 'Metaspace', replacement: WORD_START, prepend_scheme: 'always', split: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [BOS, PAD, EOS, UNK, MASK].map((content) => addedToken(vocab, content)),
    normalizer: { type: 'NFKC' },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, metaspace] },
    post_processor: {
      type: 'RobertaProcessing',
      sep: [EOS, XLMR_SPECIAL_IDS.eos],
      cls: [BOS, XLMR_SPECIAL_IDS.bos],
      trim_offsets: true,
      add_prefix_space: true,
    },
    decoder: metaspace,
    model: { type: 'Unigram', unk_id: XLMR_SPECIAL_IDS.unk, vocab, byte_fallback: false },
  };
}

const XLMR_MASK_TOKEN = { content: MASK, lstrip: true, normalized: false, rstrip: false, single_word: false };

function xlmrSpecialTokensMap(): Record<string, unknown> {
  return {
    bos_token: BOS,
    cls_token: BOS,
    eos_token: EOS,
    mask_token: XLMR_MASK_TOKEN,
    pad_token: PAD,
    sep_token: EOS,
    unk_token: UNK,
  };
}

/** As transformers ≥ 4.34 saves it: special tokens as strings plus `added_tokens_decoder`. */
function xlmrTokenizerConfig(vocab: readonly ScoredPiece[]): Record<string, unknown> {
  const decoder = Object.fromEntries(
    [BOS, PAD, EOS, UNK, MASK].map((content) => {
      const { id, ...token } = addedToken(vocab, content);
      return [String(id), token];
    }),
  );
  return {
    added_tokens_decoder: decoder,
    ...xlmrSpecialTokensMap(),
    mask_token: MASK,
    clean_up_tokenization_spaces: true,
    model_max_length: L,
    tokenizer_class: 'XLMRobertaTokenizer',
  };
}

/**
 * The prior's CLIPTokenizer: the real CLIP BPE files (the SD demo's assets), with Kandinsky's
 * prior padding: pad token `!` (id 0) instead of `<|endoftext|>` (notes §1).
 */
async function writePriorTokenizer(folder: string): Promise<void> {
  const withPad = async (file: string) => {
    const config = JSON.parse(await readFile(new URL(file, CLIP_TOKENIZER_ASSETS), 'utf8'));
    await writeFile(join(folder, file), json({ ...config, pad_token: '!' }));
  };
  await Promise.all([
    copyFile(new URL('vocab.json', CLIP_TOKENIZER_ASSETS), join(folder, 'vocab.json')),
    copyFile(new URL('merges.txt', CLIP_TOKENIZER_ASSETS), join(folder, 'merges.txt')),
    withPad('tokenizer_config.json'),
    withPad('special_tokens_map.json'),
  ]);
}

/** Writes the demo Kandinsky model into `dir` (created if needed); existing files are overwritten. */
export async function writeDemoKandinskyModel(dir: string, { version }: DemoKandinskyOptions): Promise<void> {
  if (version !== '2.1' && version !== '2.2') {
    throw new RangeError(`Kandinsky version must be "2.1" or "2.2", got ${JSON.stringify(version)}`);
  }
  const F = KANDINSKY_DEMO_FILES;
  const v21 = version === '2.1';
  const files: [string, string | Uint8Array][] = [
    [F.priorTextEncoder, priorTextEncoderOnnx()],
    [F.zeroImageEmbeds, json(zeroImageEmbeds())],
    [F.prior, priorOnnx()],
    [F.priorConfig, json(priorConfig())],
    [F.clipStats, json(clipStats())],
    [F.priorScheduler, json(priorSchedulerConfig())],
    [F.unet, unetOnnx(version)],
    [F.unetConfig, json(unetConfig(version))],
    [F.movqDecoder, movqDecoderOnnx()],
    [F.movqConfig, json(movqConfig())],
    [F.scheduler, json(decoderSchedulerConfig(version))],
  ];
  if (v21) {
    const vocab = xlmrVocabulary();
    files.push(
      [F.textEncoder, textEncoderOnnx(vocab.length)],
      [F.textEncoderConfig, json(textEncoderConfig(vocab.length))],
      [`${F.tokenizer}/tokenizer.json`, json(xlmrTokenizerJson(vocab))],
      [`${F.tokenizer}/tokenizer_config.json`, json(xlmrTokenizerConfig(vocab))],
      [`${F.tokenizer}/special_tokens_map.json`, json(xlmrSpecialTokensMap())],
    );
  }
  const folders = new Set([F.priorTokenizer, ...files.map(([file]) => dirname(file))]);
  await Promise.all([...folders].map((folder) => mkdir(join(dir, folder), { recursive: true })));
  await Promise.all([
    writePriorTokenizer(join(dir, F.priorTokenizer)),
    ...files.map(([file, data]) => writeFile(join(dir, file), data)),
  ]);
  // Written last: its presence is what marks the folder as a complete model.
  await writeFile(join(dir, F.modelIndex), json(modelIndex(version)));
}

/** Writes the demo Kandinsky model into `dir` unless it is already there (atomically; see model-folder.ts). */
export function ensureDemoKandinskyModel(dir: string, version: KandinskyVersion): Promise<string> {
  return ensureFolder(dir, KANDINSKY_DEMO_FILES.modelIndex, `demo Kandinsky ${version} model`, (staging) =>
    writeDemoKandinskyModel(staging, { version }),
  );
}
