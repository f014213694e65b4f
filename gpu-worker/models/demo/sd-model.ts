// The demo model: a tiny Stable Diffusion 1.x-shaped model in the diffusers/optimum ONNX layout,
// with the real input/output signatures and random weights (its images are noise), so the whole
// service runs and is tested with no download and no GPU. sd/ loads it like any SD export.

import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { SD_FILES } from '../sd/layout.ts';
import { ensureFolder, jsonText as json } from './model-folder.ts';
import { createGraph, type ElementType, gaussian } from './onnx-graph.ts';

export interface DemoModelOptions {
  /** The UNet's `timestep` input: float32 (this project's default) or int64 (SD 1.5 optimum export). */
  timestepType?: 'float32' | 'int64';
  /** Give the UNet's `timestep` a dynamic [batch] axis instead of the fixed [1]. */
  timestepPerSample?: boolean;
  /** The text encoder's `input_ids`: int32 (optimum export) or int64. */
  inputIdsType?: 'int32' | 'int64';
  /** scheduler_config.json `_class_name`: EulerDiscreteScheduler (default) or DDIMScheduler. */
  scheduler?: 'EulerDiscreteScheduler' | 'DDIMScheduler';
  /**
   * Extra 3×3 convolution blocks of `unetWidth` channels in the UNet, so benchmarks can give it
   * the per-step cost of a real UNet on an accelerator (0: the cheap default used in tests).
   */
  unetBlocks?: number;
  /** Channels of the UNet's hidden blocks (default 8). */
  unetWidth?: number;
}

const VOCAB_SIZE = 49408;
const MAX_POSITIONS = 77;
/** Text encoder width (768 in SD 1.x); the UNet's cross-attention dimension. */
const HIDDEN = 32;
/** Rank of the factorised token embedding (VOCAB × RANK, then RANK → HIDDEN) keeps the file ~1.6 MB. */
const EMBEDDING_RANK = 8;
const LATENT_CHANNELS = 4;
const UNET_CHANNELS = 8;
const VAE_SCALE = 8;
const SCALING_FACTOR = 0.18215;

const DIFFUSERS_VERSION = '0.30.0';
const TOKENIZER_ASSETS = new URL('../assets/clip-tokenizer/', import.meta.url);
const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json'];

export function textEncoderOnnx(inputIdsType: 'int32' | 'int64' = 'int32'): Uint8Array {
  const g = createGraph('text_encoder');
  const ids = g.input('input_ids', inputIdsType, ['batch', 'sequence']);
  const tokens = g.op('Gather', [
    g.weight('token_embedding', [VOCAB_SIZE, EMBEDDING_RANK], gaussian(VOCAB_SIZE * EMBEDDING_RANK, 101, 1)),
    ids,
  ]);
  const projected = g.op('MatMul', [
    tokens,
    g.weight('token_projection', [EMBEDDING_RANK, HIDDEN], gaussian(EMBEDDING_RANK * HIDDEN, 102, 0.35)),
  ]);
  // Position embeddings sliced to the actual sequence length (a dynamic axis).
  const length = g.op('Shape', [ids], { start: { int: 1 }, end: { int: 2 } });
  const positions = g.op('Slice', [
    g.weight('position_embedding', [MAX_POSITIONS, HIDDEN], gaussian(MAX_POSITIONS * HIDDEN, 103, 0.2)),
    g.ints([0]),
    length,
    g.ints([0]),
  ]);
  const embedded = g.op('Add', [projected, positions]);
  const mixed = g.op('Add', [
    g.op('MatMul', [
      embedded,
      g.weight('mlp_weight', [HIDDEN, HIDDEN], gaussian(HIDDEN * HIDDEN, 104, 0.25)),
    ]),
    g.weight('mlp_bias', [HIDDEN], gaussian(HIDDEN, 105, 0.1)),
  ]);
  g.op('Tanh', [mixed], {}, 'last_hidden_state');
  g.op('ReduceMean', ['last_hidden_state'], { axes: { ints: [1] }, keepdims: { int: 0 } }, 'pooler_output');
  g.output('last_hidden_state', 'float32', ['batch', 'sequence', HIDDEN]);
  g.output('pooler_output', 'float32', ['batch', HIDDEN]);
  return g.encode();
}

export function unetOnnx(
  timestepType: ElementType = 'float32',
  timestepPerSample = false,
  blocks = 0,
  width = UNET_CHANNELS,
): Uint8Array {
  const UNET_CHANNELS = width;
  const g = createGraph('unet');
  const sample = g.input('sample', 'float32', ['batch', LATENT_CHANNELS, 'height', 'width']);
  const timestep = g.input('timestep', timestepType, [timestepPerSample ? 'batch' : 1]);
  const context = g.input('encoder_hidden_states', 'float32', ['batch', 'sequence', HIDDEN]);

  const conv = g.op(
    'Conv',
    [
      sample,
      g.weight(
        'conv_in_weight',
        [UNET_CHANNELS, LATENT_CHANNELS, 3, 3],
        gaussian(UNET_CHANNELS * LATENT_CHANNELS * 9, 201, 0.3),
      ),
      g.weight('conv_in_bias', [UNET_CHANNELS], gaussian(UNET_CHANNELS, 202, 0.1)),
    ],
    { pads: { ints: [1, 1, 1, 1] } },
  );
  // Text conditioning: mean over tokens, projected to one offset per channel → [batch, C, 1, 1].
  const pooled = g.op('ReduceMax', [context], { axes: { ints: [1] }, keepdims: { int: 0 } });
  const textBias = g.op('Unsqueeze', [
    g.op('MatMul', [
      pooled,
      g.weight('text_projection', [HIDDEN, UNET_CHANNELS], gaussian(HIDDEN * UNET_CHANNELS, 203, 1)),
    ]),
    g.ints([2, 3]),
  ]);
  // Time conditioning: sin(t/1000 · w) per channel → [1 or batch, C, 1, 1].
  const t = timestepType === 'float32' ? timestep : g.op('Cast', [timestep], { to: { int: 1 } });
  const timeBias = g.op('Unsqueeze', [
    g.op('Sin', [
      g.op('Mul', [
        g.op('Unsqueeze', [g.op('Mul', [t, g.scalar(0.001)]), g.ints([1])]),
        g.weight('time_projection', [1, UNET_CHANNELS], gaussian(UNET_CHANNELS, 204, 3)),
      ]),
    ]),
    g.ints([2, 3]),
  ]);
  let hidden = g.op('Tanh', [g.op('Add', [g.op('Add', [conv, textBias]), timeBias])]);
  for (let b = 0; b < blocks; b++) {
    const inner = g.op(
      'Conv',
      [
        hidden,
        g.weight(
          `block${b}_weight`,
          [UNET_CHANNELS, UNET_CHANNELS, 3, 3],
          gaussian(UNET_CHANNELS * UNET_CHANNELS * 9, 300 + b, 0.5 / Math.sqrt(UNET_CHANNELS * 9)),
        ),
      ],
      { pads: { ints: [1, 1, 1, 1] } },
    );
    // Residual, so depth changes the cost, not the character of the output.
    hidden = g.op('Tanh', [g.op('Add', [hidden, inner])]);
  }
  const delta = g.op('Conv', [
    hidden,
    g.weight(
      'conv_out_weight',
      [LATENT_CHANNELS, UNET_CHANNELS, 1, 1],
      gaussian(LATENT_CHANNELS * UNET_CHANNELS, 205, 0.1),
    ),
    g.weight('conv_out_bias', [LATENT_CHANNELS], gaussian(LATENT_CHANNELS, 206, 0.01)),
  ]);
  // Mostly the (scaled) noisy sample itself, so ε ≈ x/σ and the Euler loop converges like a real one.
  g.op('Add', [g.op('Mul', [sample, g.scalar(0.7)]), delta], {}, 'out_sample');
  g.output('out_sample', 'float32', ['batch', LATENT_CHANNELS, 'height', 'width']);
  return g.encode();
}

export function vaeDecoderOnnx(): Uint8Array {
  const g = createGraph('vae_decoder');
  const latent = g.input('latent_sample', 'float32', [
    'batch',
    LATENT_CHANNELS,
    'latent_height',
    'latent_width',
  ]);
  const rgb = g.op(
    'Conv',
    [
      latent,
      g.weight('conv_weight', [3, LATENT_CHANNELS, 3, 3], gaussian(3 * LATENT_CHANNELS * 9, 301, 0.03)),
      g.weight('conv_bias', [3], gaussian(3, 302, 0.1)),
    ],
    { pads: { ints: [1, 1, 1, 1] } },
  );
  // Resize inputs are [X, roi, scales]; roi must be present but empty.
  const upsampled = g.op(
    'Resize',
    [rgb, '', g.weight('scales', [4], Float32Array.of(1, 1, VAE_SCALE, VAE_SCALE))],
    {
      mode: { string: 'linear' },
    },
  );
  g.op('Tanh', [upsampled], {}, 'sample');
  g.output('sample', 'float32', ['batch', 3, 'height', 'width']);
  return g.encode();
}

function modelIndex(scheduler: string): Record<string, unknown> {
  // Component entries as optimum's ONNX export writes them: [library, class].
  return {
    _class_name: 'OnnxStableDiffusionPipeline',
    _diffusers_version: DIFFUSERS_VERSION,
    _easel_demo: true,
    feature_extractor: [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ['diffusers', scheduler],
    text_encoder: ['diffusers', 'OnnxRuntimeModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'OnnxRuntimeModel'],
    vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
    vae_encoder: [null, null],
  };
}

function schedulerConfig(className: string): Record<string, unknown> {
  return {
    _class_name: className,
    _diffusers_version: DIFFUSERS_VERSION,
    num_train_timesteps: 1000,
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    trained_betas: null,
    prediction_type: 'epsilon',
    timestep_spacing: 'leading',
    steps_offset: 1,
    interpolation_type: 'linear',
    use_karras_sigmas: false,
    ...(className === 'DDIMScheduler' ? { clip_sample: false, set_alpha_to_one: false } : {}),
  };
}

/** Writes the demo model into `dir` (created if needed); existing files are overwritten. */
export async function writeDemoModel(dir: string, options: DemoModelOptions = {}): Promise<void> {
  const scheduler = options.scheduler ?? 'EulerDiscreteScheduler';
  const files = [SD_FILES.scheduler, SD_FILES.textEncoder, SD_FILES.unet, SD_FILES.vaeDecoder];
  const folders = [SD_FILES.tokenizer, ...files.map((file) => dirname(file))];
  await Promise.all(folders.map((folder) => mkdir(join(dir, folder), { recursive: true })));
  await Promise.all([
    writeFile(join(dir, SD_FILES.scheduler), json(schedulerConfig(scheduler))),
    writeFile(
      join(dir, SD_FILES.vaeConfig),
      json({
        _class_name: 'AutoencoderKL',
        scaling_factor: SCALING_FACTOR,
        latent_channels: LATENT_CHANNELS,
      }),
    ),
    writeFile(join(dir, SD_FILES.textEncoder), textEncoderOnnx(options.inputIdsType)),
    writeFile(
      join(dir, SD_FILES.unet),
      unetOnnx(options.timestepType, options.timestepPerSample, options.unetBlocks, options.unetWidth),
    ),
    writeFile(join(dir, SD_FILES.vaeDecoder), vaeDecoderOnnx()),
    ...TOKENIZER_FILES.map((file) =>
      copyFile(new URL(file, TOKENIZER_ASSETS), join(dir, SD_FILES.tokenizer, file)),
    ),
  ]);
  // Written last: its presence is what marks the folder as a complete model.
  await writeFile(join(dir, 'model_index.json'), json(modelIndex(scheduler)));
}

/** Writes the demo model into `dir` unless it is already there (atomically; see model-folder.ts). */
export function ensureDemoModel(dir: string): Promise<string> {
  return ensureFolder(dir, 'model_index.json', 'demo model', (staging) => writeDemoModel(staging));
}
