// `easel generate`: the worker's pipeline (translate → diffusion → JPEG) in this process, no server.

import { randomInt } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import {
  GENERATION_LIMITS,
  KARRAS_SCHEDULER_CHOICES,
  SCHEDULER_CHOICES,
  type SchedulerChoice,
} from '../../shared/generation-contract.ts';
import { createProgressBar } from '../progress.ts';
import {
  choiceFlag,
  generationFlags,
  intFlag,
  numberFlag,
  outputFiles,
  parseFlags,
  requireDir,
  requireFlag,
  UsageError,
} from './cli.ts';

export const generateUsage = `usage: easel generate --model DIR --prompt TEXT --out FILE.jpg [options]

  --model DIR              model folder: a diffusers/optimum ONNX export (Stable Diffusion) or a Kandinsky 2.1/2.2 ONNX export
                           (\`easel models demo DIR\` writes a tiny one, \`easel models fetch\` gets real ones)
  --prompt TEXT            what to draw
  --negative-prompt TEXT   what to steer away from (default: none)
  --width N, --height N    image size in pixels, multiples of 8 (64 for Kandinsky); default: the
                           model's (512×512 for SD 1.x and Kandinsky)
  --steps N                denoising steps (default: the model's; SD 25, Kandinsky 100)
  --guidance X             classifier-free guidance scale (default: the model's; SD 7.5, Kandinsky 4;
                           1 or less turns it off)
  --seed N                 0..4294967295 (default: random; always reported)
  --scheduler NAME         sampler: ${SCHEDULER_CHOICES.join(', ')}
                           (default: the one the model's scheduler_config.json names)
  --karras                 Karras sigma spacing (${KARRAS_SCHEDULER_CHOICES.join(', ')} only)
  --num-images N           images from consecutive seeds (default 1); with N > 1 the files are
                           FILE-0.jpg, FILE-1.jpg, … (image i uses seed + i)
  --provider cpu|cuda      ONNX Runtime execution provider (default cpu)
  --translator DIR         Marian translator folder: Russian (Cyrillic) prompts are translated to
                           English before the text encoder sees them
  --translate MODE         auto (default: translate prompts with Cyrillic for a model that does not
                           read Russian natively) | always | off
  --out FILE.jpg           where to write the JPEG
  --json                   print one JSON object (seed, scheduler, prompt, prompt_en, translated,
                           prompt_truncated, files, timings in ms) instead of a summary
`;

const { side, seed: seedRange } = GENERATION_LIMITS;
const TRANSLATE_MODES = ['auto', 'always', 'off'] as const;
const PROVIDERS = ['cpu', 'cuda'] as const;

function ms(value: number): number {
  return Math.round(value * 10) / 10;
}

export async function generateCommand(args: string[]): Promise<void> {
  const { values } = parseFlags(args, {
    model: { type: 'string' },
    prompt: { type: 'string' },
    ...generationFlags,
    provider: { type: 'string' },
    translator: { type: 'string' },
    translate: { type: 'string' },
    out: { type: 'string' },
    json: { type: 'boolean' },
  });
  const modelDir = requireFlag(values.model, '--model');
  const prompt = values.prompt;
  if (prompt === undefined || prompt.trim() === '') throw new UsageError('--prompt is required');
  const negativePrompt = values['negative-prompt'] ?? '';
  const out = requireFlag(values.out, '--out');
  await requireDir(modelDir, 'model');
  // The model's own defaults (and the prompt languages it reads) come from its family and card.
  const { readModelCard } = await import('../../gpu-worker/models/model-card.ts');
  const { capabilities } = await readModelCard(modelDir);
  // Down to one latent cell (the service's requests start at side.min), up to the contract's limit.
  const width = intFlag(values.width, '--width', capabilities.width.default, side.multipleOf, side.max);
  const height = intFlag(values.height, '--height', capabilities.height.default, side.multipleOf, side.max);
  for (const [flag, value] of [
    ['--width', width],
    ['--height', height],
  ] as const) {
    if (value % side.multipleOf !== 0) {
      throw new UsageError(`${flag} must be a multiple of ${side.multipleOf}, got ${value}`);
    }
  }
  const steps = intFlag(values.steps, '--steps', capabilities.steps.default, 1, 1000);
  const guidanceScale = numberFlag(
    values.guidance,
    '--guidance',
    capabilities.guidance_scale.default,
    0,
    100,
  );
  const numImages = intFlag(values['num-images'], '--num-images', 1, 1, 16);
  const provider = choiceFlag(values.provider, '--provider', PROVIDERS, 'cpu');
  const mode = choiceFlag(values.translate, '--translate', TRANSLATE_MODES, 'auto');
  const translatorDir = values.translator;
  if (mode === 'always' && translatorDir === undefined) {
    throw new UsageError('--translate always needs --translator DIR');
  }
  const scheduler =
    values.scheduler === undefined
      ? undefined
      : choiceFlag<SchedulerChoice>(values.scheduler, '--scheduler', SCHEDULER_CHOICES, 'euler');
  const seed =
    values.seed === undefined
      ? randomInt(seedRange.min, seedRange.max + 1)
      : intFlag(values.seed, '--seed', 0, seedRange.min, seedRange.max);
  const files = outputFiles(out, numImages);

  const useTranslator = translatorDir !== undefined && mode !== 'off';
  if (useTranslator) await requireDir(translatorDir, 'translator');

  const [{ loadTextToImage }, { encodeJpeg }, translation] = await Promise.all([
    import('../../gpu-worker/models/load-model.ts'),
    import('../../gpu-worker/jpeg.ts'),
    import('../../gpu-worker/models/translator.ts'),
  ]);

  const loadStart = performance.now();
  const loaded = await Promise.allSettled([
    loadTextToImage(modelDir, { provider }),
    useTranslator ? translation.loadTranslator(translatorDir) : Promise.resolve(undefined),
  ]);
  const [modelResult, translatorResult] = loaded;
  if (modelResult.status === 'rejected' || translatorResult.status === 'rejected') {
    await Promise.allSettled(
      loaded.flatMap((r) => (r.status === 'fulfilled' && r.value ? [r.value.release()] : [])),
    );
    throw modelResult.status === 'rejected'
      ? modelResult.reason
      : (translatorResult as PromiseRejectedResult).reason;
  }
  const model = modelResult.value;
  const translator = translatorResult.value;
  const loadMs = performance.now() - loadStart;

  const bar = createProgressBar();
  try {
    const languages = capabilities.languages;
    if (!translator && mode !== 'off' && translation.needsTranslation(prompt, 'auto', languages)) {
      process.stderr.write(
        'note: the prompt is not in English and no --translator was given; the text encoder sees it as is\n',
      );
    }
    const [promptResult, negativeResult] = await Promise.all([
      translation.translatePrompt(translator, prompt, mode, languages),
      translation.translatePrompt(translator, negativePrompt, mode, languages),
    ]);

    const result = await model.generate({
      prompt: promptResult.promptEn,
      negativePrompt: negativeResult.promptEn,
      width,
      height,
      steps,
      guidanceScale,
      seed,
      numImages,
      scheduler,
      karras: values.karras,
      onStep: bar ? (step, total) => bar.update(step, total, `denoising, step ${step}/${total}`) : undefined,
    });
    bar?.finish();

    const jpegStart = performance.now();
    await mkdir(dirname(resolve(out)), { recursive: true });
    await Promise.all(
      result.images.map(async (image, i) => writeFile(files[i] as string, await encodeJpeg(image))),
    );
    const jpegMs = performance.now() - jpegStart;

    const timings = {
      load: ms(loadMs),
      translate: ms(promptResult.ms + negativeResult.ms),
      encode: ms(result.timings.encodeMs),
      denoise: ms(result.timings.denoiseMs),
      decode: ms(result.timings.decodeMs),
      jpeg: ms(jpegMs),
    };
    const translated = promptResult.translated || negativeResult.translated;
    if (values.json) {
      const report = {
        seed: result.seed,
        scheduler: result.scheduler,
        prompt,
        prompt_en: promptResult.promptEn,
        translated,
        prompt_truncated: result.promptTruncated,
        files: files.map((file) => resolve(file)),
        timings,
      };
      process.stdout.write(`${JSON.stringify(report)}\n`);
      return;
    }
    const lines = [
      `wrote ${files.join(', ')} (${width}×${height})`,
      `seed ${result.seed}, scheduler ${result.scheduler}, ${steps} steps, guidance ${guidanceScale}`,
    ];
    if (promptResult.translated) lines.push(`prompt translated: ${promptResult.promptEn}`);
    if (negativeResult.translated) lines.push(`negative prompt translated: ${negativeResult.promptEn}`);
    if (result.promptTruncated)
      lines.push('note: the prompt was longer than the text encoder takes and was cut');
    lines.push(
      `time: load ${Math.round(timings.load)} ms, translate ${Math.round(timings.translate)} ms, ` +
        `encode ${Math.round(timings.encode)} ms, denoise ${Math.round(timings.denoise)} ms, ` +
        `decode ${Math.round(timings.decode)} ms, jpeg ${Math.round(timings.jpeg)} ms`,
    );
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    bar?.finish();
    await Promise.allSettled([model.release(), translator?.release()]);
  }
}
