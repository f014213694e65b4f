// Loads every model the worker needs once, in parallel, and warms them before the worker takes
// jobs: the first run pays for ONNX Runtime's allocations and kernel selection.
import type { Logger } from 'pino';
import type { WorkerConfig } from './config.ts';
import { ensureDemoTranslator } from './models/demo/marian-model.ts';
import { ensureDemoModel } from './models/demo/sd-model.ts';
import { loadTextToImage } from './models/load-model.ts';
import type { TextToImage } from './models/text-to-image.ts';
import { loadTranslator, type Translator } from './models/translator.ts';

export interface WarmModels {
  model: TextToImage;
  translator: Translator | undefined;
  release(): Promise<void>;
}

/** MODEL_DIR, or the demo model's folder (built on first use). */
export async function resolveModelDir(config: WorkerConfig): Promise<string> {
  return config.modelDir ?? (await ensureDemoModel(config.demoModelDir));
}

export async function loadWarmModels(
  config: WorkerConfig,
  modelDir: string,
  logger: Logger,
): Promise<WarmModels> {
  const { env } = config;
  const started = performance.now();
  const [model, translator] = await Promise.all([
    loadTextToImage(modelDir, { provider: env.EXECUTION_PROVIDER }),
    (async () => {
      if (!config.translatorDir) return undefined;
      const dir =
        config.translatorDir === config.demoTranslatorDir
          ? await ensureDemoTranslator(config.demoTranslatorDir)
          : config.translatorDir;
      return loadTranslator(dir);
    })(),
  ]);
  const loadMs = Math.round(performance.now() - started);

  let warmupMs = 0;
  if (env.WARMUP) {
    const warm = performance.now();
    await Promise.all([
      model.generate({
        prompt: 'warm-up',
        negativePrompt: '',
        width: env.WARMUP_SIZE,
        height: env.WARMUP_SIZE,
        steps: 2,
        guidanceScale: 7.5,
        seed: 0,
        numImages: 1,
      }),
      translator?.translate('прогрев'),
    ]);
    warmupMs = Math.round(performance.now() - warm);
  }
  if (!translator && env.TRANSLATION_MODE !== 'off') {
    logger.warn('no TRANSLATOR_DIR for this model: Russian prompts will reach the text encoder untranslated');
  }
  logger.info(
    {
      model: model.info,
      translator: translator ? translator.info : null,
      translation_mode: env.TRANSLATION_MODE,
      load_ms: loadMs,
      warmup_ms: warmupMs,
      demo: !config.modelDir,
    },
    'models loaded',
  );
  return {
    model,
    translator,
    async release() {
      await Promise.allSettled([model.release(), translator?.release()]);
    },
  };
}
