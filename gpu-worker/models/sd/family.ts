// Stable Diffusion 1.x/2.x as a model family: what the registry in load-model.ts needs to know.

import type { ModelFamily } from '../text-to-image.ts';
import { stableDiffusionCapabilities } from './capabilities.ts';
import { SD_FETCH_FILES, SD_LAYOUT } from './layout.ts';

export const stableDiffusion: ModelFamily = {
  name: 'stable-diffusion',
  classNames: ['OnnxStableDiffusionPipeline', 'StableDiffusionPipeline'],
  layout: SD_LAYOUT,
  fetchFiles: SD_FETCH_FILES,
  capabilities: stableDiffusionCapabilities,
  async load(dir, options) {
    // Imported when a model loads, so reading the registry (the CLI's fetch does) never loads ONNX Runtime.
    const { loadStableDiffusion } = await import('./pipeline.ts');
    return loadStableDiffusion(dir, options);
  },
};
