// What a Stable Diffusion 1.x/2.x export can be asked for: every sampler the pipeline implements,
// the contract's sizes and step counts, classifier-free guidance with a negative prompt, English
// prompts (CLIP's vocabulary). The default sampler is the model's scheduler_config.json.
import { KARRAS_SCHEDULER_CHOICES, SCHEDULER_CHOICES } from '../../../shared/generation-contract.ts';
import { CONTRACT_CAPABILITIES, type ModelCapabilities } from '../../../shared/model-capabilities.ts';
import { defaultScheduler, schedulerLabel } from '../schedulers/registry.ts';
import { loadSchedulerConfig } from './layout.ts';

export async function stableDiffusionCapabilities(dir: string): Promise<ModelCapabilities> {
  const config = await loadSchedulerConfig(dir);
  return {
    samplers: [...SCHEDULER_CHOICES],
    karras_samplers: [...KARRAS_SCHEDULER_CHOICES],
    default_sampler: schedulerLabel(defaultScheduler(config)),
    width: { ...CONTRACT_CAPABILITIES.width },
    height: { ...CONTRACT_CAPABILITIES.height },
    steps: { ...CONTRACT_CAPABILITIES.steps },
    guidance_scale: { ...CONTRACT_CAPABILITIES.guidance_scale },
    negative_prompt: true,
    languages: ['en'],
    max_images: CONTRACT_CAPABILITIES.max_images,
  };
}
