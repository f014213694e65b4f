// The Generation resource: the one shape a generation is shown in, by the API's answers and by the
// webhook sender's event bodies. Its zod schema gives the resource its type (toResource in
// generation-resource.ts returns it; the CLI and the tests read it) and, through the API, the
// OpenAPI components; the API names the `Generation` component and gives it its example
// (api/generations.schemas.ts). Built with @hono/zod-openapi's z so the descriptions and examples
// below reach openapi.yaml.
import { z } from '@hono/zod-openapi';
import { GENERATION_STAGES, GENERATION_STATUSES, type GenerationStage } from '../db/types.ts';
import { SCHEDULER_CHOICES } from './generation-contract.ts';

/** The id the documentation's examples use. */
export const EXAMPLE_GENERATION_ID = '0b6f8f2e-5c1e-4d3a-9a57-3f1f2d8c9e10';

const isoTime = z.iso.datetime().openapi({ example: '2026-11-28T10:15:30.123Z' });

export const GenerationOutput = z
  .object({
    index: z.int().min(0).openapi({ example: 0 }),
    url: z.url().openapi({
      description: 'Presigned GET URL, minted on every read; fetch it before expires_at.',
      example: `https://s3.example.com/easel/generations/${EXAMPLE_GENERATION_ID}/0.jpg?X-Amz-Signature=...`,
    }),
    expires_at: isoTime.openapi({ description: 'When url stops working.' }),
    width: z.int().openapi({ example: 512 }),
    height: z.int().openapi({ example: 512 }),
    content_type: z.string().openapi({ example: 'image/jpeg' }),
    bytes: z.int().min(0).openapi({ example: 48213 }),
    sha256: z
      .string()
      .openapi({ example: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08' }),
  })
  .openapi('GenerationOutput');

export const GenerationError = z
  .object({
    code: z.string().openapi({ example: 'invalid_input' }),
    message: z.string().openapi({ example: 'the prompt could not be encoded' }),
  })
  .openapi('GenerationError');

/** `translate_ms`, `encode_ms`, …: one optional number per stage of db/types.ts' GENERATION_STAGES. */
const stageMilliseconds = Object.fromEntries(
  GENERATION_STAGES.map((stage) => [`${stage}_ms`, z.number().optional()]),
) as { [S in GenerationStage as `${S}_ms`]: z.ZodOptional<z.ZodNumber> };

export const StageTimings = z
  .object({
    ...stageMilliseconds,
    queued_ms: z.number().optional().openapi({
      description: 'From creation to the start of the last attempt; present once it has started.',
    }),
    run_ms: z.number().optional().openapi({
      description: 'From the start of the last attempt to the end; present once it has ended.',
    }),
  })
  .openapi('StageTimings', {
    description:
      'Milliseconds: per pipeline stage of the successful attempt, plus `queued_ms` and `run_ms` when known.',
  });

export const GenerationProgress = z
  .object({
    step: z.int().min(0).openapi({ description: 'Denoising steps done.', example: 12 }),
    total: z.int().min(1).openapi({ description: 'Denoising steps in all.', example: 25 }),
  })
  .openapi('GenerationProgress', {
    description:
      'Denoising progress of the running attempt, persisted by the worker at most four times a second; after the end, the last step reached.',
  });

/** The resource's schema, without its OpenAPI component name and example (the API adds those). */
export const GenerationResourceSchema = z.object({
  id: z.uuid().openapi({ example: EXAMPLE_GENERATION_ID }),
  object: z.literal('generation'),
  status: z.enum(GENERATION_STATUSES).openapi({ example: 'queued' }),
  model: z.string().nullable().openapi({
    description:
      'The model it runs on (GET /v1/models/{id}); null only for generations created before the service had several models.',
    example: 'sd15',
  }),
  prompt: z.string(),
  negative_prompt: z.string(),
  prompt_en: z.string().nullable().openapi({
    description:
      'The prompt the text encoder received: the English translation when the prompt was translated (see `translated`), else the prompt itself. Null until the worker has taken the generation.',
  }),
  translated: z.boolean().nullable().openapi({
    description:
      'Whether the worker translated the prompts to English before encoding: a prompt in a language the model does not read natively (its `languages` capability) is, when TRANSLATION_MODE is auto. Null until the worker has taken the generation.',
    example: false,
  }),
  negative_prompt_en: z
    .string()
    .nullable()
    .openapi({ description: 'The negative prompt as the text encoder received it; null until known.' }),
  width: z.int(),
  height: z.int(),
  steps: z.int(),
  guidance_scale: z.number(),
  seed: z.int().openapi({ description: 'The seed used (the request value or the one the server chose).' }),
  num_images: z.int(),
  scheduler: z.string().nullable().openapi({
    description: 'Sampler that ran, e.g. dpmpp_2m_karras; null until the worker has run it.',
  }),
  requested_scheduler: z
    .enum(SCHEDULER_CHOICES)
    .nullable()
    .openapi({ description: "The sampler the request named; null: the model's default." }),
  karras: z
    .boolean()
    .nullable()
    .openapi({ description: 'Karras spacing as requested; null: the model default.' }),
  queue_position: z.int().min(0).nullable().openapi({
    description:
      'Queued generations of the same model ahead of this one (0 = next); null unless status is queued.',
    example: 0,
  }),
  live_workers: z
    .int()
    .min(0)
    .nullable()
    .openapi({
      description:
        "Workers holding this generation's model that are live now; null unless status is queued. 0: it waits " +
        'until a worker of its model starts (and `eta` is null).',
      example: 1,
    }),
  progress: z.union([GenerationProgress, z.null()]).openapi({
    description: 'Null until the worker has finished a denoising step, and while queued.',
  }),
  eta: isoTime.nullable().openapi({
    description:
      'An estimate of when the generation will finish; null when finished or when there is nothing to ' +
      "estimate from. Running: now + the remaining steps × the attempt's moving-average step time " +
      '(decoding and upload add a little). Queued: now + (queue_position + 1) × the mean run time of ' +
      "the model's last 20 succeeded generations ÷ its live workers; null while none is live.",
    example: '2026-11-28T10:15:39.000Z',
  }),
  cancel_requested: z.boolean().openapi({
    description:
      'True once a cancel was requested. A running generation stays `running` until the worker stops it ' +
      'at its next denoising step, then becomes `canceled`; one whose images were already stored ends `succeeded`.',
    example: false,
  }),
  outputs: z.array(GenerationOutput),
  // A union rather than .nullable(): the latter would mark the shared component itself nullable.
  error: z
    .union([GenerationError, z.null()])
    .openapi({ description: 'Why the last attempt failed; null unless status is failed.' }),
  attempts: z.int().min(0),
  prompt_truncated: z
    .boolean()
    .openapi({ description: "True when the prompt exceeded the encoder's tokens." }),
  timings: StageTimings,
  created_at: isoTime,
  started_at: isoTime.nullable(),
  finished_at: isoTime.nullable(),
});

/** The Generation resource as served and as sent in webhook events. */
export type GenerationResource = z.infer<typeof GenerationResourceSchema>;
export type GenerationOutputResource = z.infer<typeof GenerationOutput>;
