// The model tests register when no worker announces one (API-only tests create generations with
// no worker up): the demo model as its worker announces it. test/demo-model-card.test.ts checks
// this against what the worker actually reads from the demo model's folder.
import type { Db } from '../../db/connect.ts';
import { type ModelRegistration, registerModel } from '../../db/models.repository.ts';
import { KARRAS_SCHEDULER_CHOICES, SCHEDULER_CHOICES } from '../../shared/generation-contract.ts';
import { CONTRACT_CAPABILITIES } from '../../shared/model-capabilities.ts';

export const DEMO_MODEL_ID = 'demo';

export const DEMO_MODEL: ModelRegistration = {
  id: DEMO_MODEL_ID,
  family: 'stable-diffusion',
  capabilities: {
    samplers: [...SCHEDULER_CHOICES],
    karras_samplers: [...KARRAS_SCHEDULER_CHOICES],
    default_sampler: 'euler',
    width: { ...CONTRACT_CAPABILITIES.width },
    height: { ...CONTRACT_CAPABILITIES.height },
    steps: { ...CONTRACT_CAPABILITIES.steps },
    guidance_scale: { ...CONTRACT_CAPABILITIES.guidance_scale },
    negative_prompt: true,
    languages: ['en'],
    max_images: CONTRACT_CAPABILITIES.max_images,
  },
};

/** Registers the demo model (as an operator would before its workers start). */
export async function registerDemoModel(db: Db): Promise<void> {
  await registerModel(db, DEMO_MODEL);
}
