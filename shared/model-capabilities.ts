// What a model can be asked for, in one place for every layer: a family declares its ranges (the
// worker's registry), a model folder's easel-model.json narrows them (mergeCapabilities), workers
// announce the result into the models table, and the API checks each request against it
// (capabilityErrors) before queueing. Built with @hono/zod-openapi's z so GET /v1/models documents
// the same shape the worker validates.
import { z } from '@hono/zod-openapi';
import type { ModelCapabilities } from '../db/types.ts';
import { GENERATION_LIMITS, SCHEDULER_CHOICES } from './generation-contract.ts';

export type { ModelCapabilities } from '../db/types.ts';

const int = z.int().min(0);
const ordered = (r: { min: number; max: number; default: number }) =>
  r.min <= r.default && r.default <= r.max;
const side = z
  .object({ min: int, max: int, multiple_of: z.int().min(1), default: int })
  .refine(ordered, { message: 'needs min <= default <= max' })
  .refine(
    (s) => s.min % s.multiple_of === 0 && s.max % s.multiple_of === 0 && s.default % s.multiple_of === 0,
    {
      message: 'min, max and default must be multiples of multiple_of',
    },
  );
const range = (n: z.ZodNumber) =>
  z.object({ min: n, max: n, default: n }).refine(ordered, { message: 'needs min <= default <= max' });
const sampler = z.enum(SCHEDULER_CHOICES);

export const ModelCapabilitiesSchema = z
  .object({
    samplers: z.array(sampler).openapi({
      description:
        "Samplers a request may choose (`scheduler`); empty: only the model's own (`default_sampler`) runs.",
    }),
    karras_samplers: z
      .array(sampler)
      .openapi({ description: 'Those of `samplers` that take `karras: true`.' }),
    default_sampler: z.string().openapi({
      description: "What runs without `scheduler`, named as a generation's `scheduler` names it.",
      example: 'euler_a',
    }),
    width: side.openapi({ description: 'Width in pixels: range, step and default.' }),
    height: side.openapi({ description: 'Height in pixels: range, step and default.' }),
    steps: range(z.int().min(1)).openapi({ description: 'Denoising steps: range and default.' }),
    guidance_scale: range(z.number().min(0)).openapi({
      description: 'Classifier-free guidance: range and default.',
    }),
    negative_prompt: z.boolean().openapi({ description: 'Whether the model uses `negative_prompt`.' }),
    languages: z
      .array(z.string().regex(/^[a-z]{2}$/))
      .min(1)
      .openapi({
        description:
          'Prompt languages the model reads natively (ISO 639-1). With TRANSLATION_MODE=auto, a prompt in another language the worker can translate is translated to English first.',
        example: ['en'],
      }),
    max_images: z.int().min(1).openapi({ description: 'The most images one request may ask for.' }),
  })
  .refine((c) => c.karras_samplers.every((s) => c.samplers.includes(s)), {
    path: ['karras_samplers'],
    message: 'must be a subset of samplers',
  })
  .openapi('ModelCapabilities', {
    description:
      'What a model can be asked for; requests outside it are refused with 422 before they are queued.',
  });

// A model folder's easel-model.json: any part of the capabilities, merged over the family's.
const sideOverride = z.object({ min: int, max: int, multiple_of: z.int().min(1), default: int }).partial();
const rangeOverride = z.object({ min: z.number(), max: z.number(), default: z.number() }).partial();
export const CapabilitiesOverrideSchema = z.strictObject({
  samplers: z.array(sampler).min(1).optional(),
  karras_samplers: z.array(sampler).optional(),
  width: sideOverride.optional(),
  height: sideOverride.optional(),
  steps: rangeOverride.optional(),
  guidance_scale: rangeOverride.optional(),
  negative_prompt: z.boolean().optional(),
  languages: z
    .array(z.string().regex(/^[a-z]{2}$/))
    .min(1)
    .optional(),
  max_images: z.int().min(1).optional(),
});
export type CapabilitiesOverride = z.infer<typeof CapabilitiesOverrideSchema>;

/**
 * The family's capabilities narrowed by a model's override. A model may only narrow: it cannot
 * offer a sampler, size or step count its family's pipeline does not run. Throws a message
 * naming the offending field.
 */
export function mergeCapabilities(
  base: ModelCapabilities,
  override: CapabilitiesOverride,
): ModelCapabilities {
  const merged: ModelCapabilities = {
    ...base,
    ...override,
    width: { ...base.width, ...override.width },
    height: { ...base.height, ...override.height },
    steps: { ...base.steps, ...override.steps },
    guidance_scale: { ...base.guidance_scale, ...override.guidance_scale },
    samplers: override.samplers ?? base.samplers,
    karras_samplers: (override.karras_samplers ?? base.karras_samplers).filter((s) =>
      (override.samplers ?? base.samplers).includes(s),
    ),
  };
  const parsed = ModelCapabilitiesSchema.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${issue?.path.join('.') || 'capabilities'}: ${issue?.message ?? 'invalid'}`);
  }
  const outside: string[] = [];
  for (const s of merged.samplers) if (!base.samplers.includes(s)) outside.push(`samplers: ${s}`);
  for (const s of merged.karras_samplers) {
    if (!base.karras_samplers.includes(s)) outside.push(`karras_samplers: ${s}`);
  }
  for (const key of ['width', 'height', 'steps', 'guidance_scale'] as const) {
    if (merged[key].min < base[key].min || merged[key].max > base[key].max) {
      outside.push(
        `${key}: ${merged[key].min}..${merged[key].max} (family: ${base[key].min}..${base[key].max})`,
      );
    }
  }
  for (const key of ['width', 'height'] as const) {
    if (merged[key].multiple_of % base[key].multiple_of !== 0) {
      outside.push(
        `${key}.multiple_of: ${merged[key].multiple_of} (family: multiples of ${base[key].multiple_of})`,
      );
    }
  }
  if (merged.negative_prompt && !base.negative_prompt) outside.push('negative_prompt');
  if (merged.max_images > base.max_images)
    outside.push(`max_images: ${merged.max_images} (family: ${base.max_images})`);
  if (outside.length > 0) throw new Error(`beyond what the family runs: ${outside.join('; ')}`);
  return merged;
}

/** The request fields a model's capabilities bound (after the API's defaults are applied). */
export interface CapabilityInput {
  width: number;
  height: number;
  steps: number;
  guidance_scale: number;
  num_images: number;
  negative_prompt: string;
  scheduler?: string | undefined;
  karras?: boolean | undefined;
}

/** Each field of a request the model cannot run, with a message naming the model. */
export function capabilityErrors(
  input: CapabilityInput,
  modelId: string,
  caps: ModelCapabilities,
): { field: string; message: string }[] {
  const errors: { field: string; message: string }[] = [];
  const model = `model '${modelId}'`;
  for (const key of ['width', 'height'] as const) {
    const { min, max, multiple_of: step } = caps[key];
    const value = input[key];
    if (value < min || value > max || value % step !== 0) {
      errors.push({ field: key, message: `${model} takes ${key} ${min}..${max} in multiples of ${step}` });
    }
  }
  for (const key of ['steps', 'guidance_scale'] as const) {
    const { min, max } = caps[key];
    if (input[key] < min || input[key] > max) {
      errors.push({ field: key, message: `${model} takes ${key} ${min}..${max}` });
    }
  }
  if (input.num_images > caps.max_images) {
    errors.push({
      field: 'num_images',
      message: `${model} makes at most ${caps.max_images} images per request`,
    });
  }
  if (input.negative_prompt !== '' && !caps.negative_prompt) {
    errors.push({ field: 'negative_prompt', message: `${model} does not use a negative prompt` });
  }
  if (input.scheduler !== undefined && !caps.samplers.includes(input.scheduler)) {
    errors.push({
      field: 'scheduler',
      message:
        caps.samplers.length > 0
          ? `${model} offers ${caps.samplers.join(', ')}`
          : `${model} runs only its own sampler (${caps.default_sampler})`,
    });
  }
  if (input.karras) {
    const sampler = input.scheduler ?? caps.default_sampler.replace(/_karras$/, '');
    if (!caps.karras_samplers.includes(sampler)) {
      errors.push({
        field: 'karras',
        message: `${model} takes karras only with ${caps.karras_samplers.join(', ') || 'no sampler'}`,
      });
    }
  }
  return errors;
}

/** The limits every family shares today (GENERATION_LIMITS): the base a family starts from. */
export const CONTRACT_CAPABILITIES = {
  width: { ...sideLimits() },
  height: { ...sideLimits() },
  steps: { ...GENERATION_LIMITS.steps },
  guidance_scale: {
    min: GENERATION_LIMITS.guidanceScale.min,
    max: GENERATION_LIMITS.guidanceScale.max,
    default: GENERATION_LIMITS.guidanceScale.default,
  },
  max_images: GENERATION_LIMITS.numImages.max,
} as const;

function sideLimits() {
  const { min, max, multipleOf, default: value } = GENERATION_LIMITS.side;
  return { min, max, multiple_of: multipleOf, default: value };
}
