// What a Kandinsky export can be asked for. The decoder's own scheduler runs (2.1: DDIM, 2.2:
// DDPM); `steps` and `guidance_scale` are the decoder's (the prior runs its fixed 25 steps at
// guidance 4, as diffusers' combined pipeline defaults). Sizes are multiples of 64: the MoVQ
// decodes ceil(side/64)·8 latents 8× up, so any other side would need a crop. 2.1's decoder reads
// its prompt with a multilingual (XLM-RoBERTa) encoder, so Russian goes in untranslated; 2.2 has
// only the prior's English CLIP encoder.
import { CONTRACT_CAPABILITIES, type ModelCapabilities } from '../../../shared/model-capabilities.ts';
import type { KandinskyVersion } from './layout.ts';

export const KANDINSKY_DEFAULTS = Object.freeze({
  priorSteps: 25,
  priorGuidance: 4,
  steps: 100,
  guidance: 4,
  side: 512,
});

export function kandinskyCapabilities(version: KandinskyVersion): ModelCapabilities {
  const side = {
    min: 64,
    max: CONTRACT_CAPABILITIES.width.max,
    multiple_of: 64,
    default: KANDINSKY_DEFAULTS.side,
  };
  return {
    samplers: version === '2.1' ? ['ddim'] : [],
    karras_samplers: [],
    default_sampler: version === '2.1' ? 'ddim' : 'ddpm',
    width: { ...side },
    height: { ...side },
    steps: { min: 1, max: CONTRACT_CAPABILITIES.steps.max, default: KANDINSKY_DEFAULTS.steps },
    guidance_scale: {
      min: CONTRACT_CAPABILITIES.guidance_scale.min,
      max: CONTRACT_CAPABILITIES.guidance_scale.max,
      default: KANDINSKY_DEFAULTS.guidance,
    },
    negative_prompt: true,
    languages: version === '2.1' ? ['en', 'ru'] : ['en'],
    max_images: CONTRACT_CAPABILITIES.max_images,
  };
}
