// One zod schema per shape: these drive request validation, handler types and openapi.yaml. The
// limits and sampler names come from the generation contract, the resource's shape from
// shared/generation.schemas.ts (the webhook sender serves it too); the Problem schema is beside the
// error catalogue (errors.ts).
import { z } from '@hono/zod-openapi';
import { MODEL_ID_PATTERN } from '../db/queue.ts';
import { GENERATION_STATUSES, WEBHOOK_EVENT_TYPES } from '../db/types.ts';
import {
  EXAMPLE_GENERATION_ID,
  type GenerationResource,
  GenerationResourceSchema,
} from '../shared/generation.schemas.ts';
import {
  GENERATION_LIMITS,
  KARRAS_SCHEDULER_CHOICES,
  SCHEDULER_CHOICES,
} from '../shared/generation-contract.ts';
import { integerParam } from './integer-param.ts';

const { side, steps, guidanceScale, numImages, seed, promptMaxLength } = GENERATION_LIMITS;

const dimension = (name: string) =>
  z
    .int()
    .min(side.min)
    .max(side.max)
    .multipleOf(side.multipleOf)
    .optional()
    .openapi({
      description:
        `Image ${name} in pixels: a multiple of ${side.multipleOf} in ${side.min}..${side.max}, within the ` +
        `model's range (GET /v1/models). Absent: the model's default (${side.default} for Stable Diffusion 1.x).`,
      example: 512,
    });

export const CreateGenerationRequest = z
  .strictObject({
    model: z
      .string()
      .regex(MODEL_ID_PATTERN, 'must be a model id (lowercase letters, digits, ".", "_" and "-")')
      .optional()
      .openapi({
        description:
          "The model to run, by id (GET /v1/models). Absent: the service's default model. Every other field is " +
          "checked against this model's capabilities (422 `unsupported_by_model`); an unknown or retired model " +
          'is 422 `model_not_found`.',
        example: 'sd15',
      }),
    prompt: z
      .string()
      .trim()
      .min(1)
      .max(promptMaxLength)
      .openapi({ description: 'What to draw. Leading and trailing whitespace is removed.' }),
    negative_prompt: z.string().max(promptMaxLength).default('').openapi({
      description:
        "What to steer away from; only for models that use one (the model's `negative_prompt` capability).",
      example: 'blurry, low quality',
    }),
    width: dimension('width'),
    height: dimension('height'),
    steps: z
      .int()
      .min(steps.min)
      .max(steps.max)
      .optional()
      .openapi({
        description: `Denoising steps, within the model's range. Absent: the model's default (${steps.default} for Stable Diffusion 1.x).`,
        example: 25,
      }),
    guidance_scale: z
      .number()
      .min(guidanceScale.min)
      .max(guidanceScale.max)
      .optional()
      .openapi({
        description: `Classifier-free guidance strength, within the model's range. Absent: the model's default (${guidanceScale.default} for Stable Diffusion 1.x).`,
        example: 7.5,
      }),
    seed: z.int().min(seed.min).max(seed.max).optional().openapi({
      description: 'Random seed for reproducible results; chosen by the server when absent.',
      example: 42,
    }),
    num_images: z
      .int()
      .min(numImages.min)
      .max(numImages.max)
      .default(numImages.default)
      .openapi({ description: "Images to generate, up to the model's `max_images`.", example: 1 }),
    scheduler: z.enum(SCHEDULER_CHOICES).optional().openapi({
      description:
        "Sampler: euler, euler_a (Euler ancestral), ddim, lcm or dpmpp_2m (DPM++ 2M), among those the model offers. Absent: the model's own scheduler configuration decides.",
      example: 'dpmpp_2m',
    }),
    karras: z
      .boolean()
      .optional()
      .openapi({
        description: `Karras sigma spacing; only for ${KARRAS_SCHEDULER_CHOICES.join(', ')}. Absent: the model's configuration decides.`,
        example: true,
      }),
    webhook_url: z
      .url({ protocol: /^https?$/, error: 'must be an http or https URL' })
      .max(2048)
      .optional()
      .openapi({
        description:
          'Where to POST status changes, signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, ' +
          "`webhook-signature` with the key's secret from `GET /v1/webhooks/secret`). Loopback, private and " +
          'link-local addresses are refused.',
        example: 'https://example.com/hooks/easel',
      }),
    webhook_events: z
      .array(z.enum(WEBHOOK_EVENT_TYPES))
      .min(1)
      .optional()
      .openapi({
        description:
          'Which status changes to send; default: generation.completed, generation.failed, generation.canceled. ' +
          'Needs webhook_url.',
        example: ['generation.started', 'generation.completed', 'generation.failed', 'generation.canceled'],
      }),
  })
  .refine((input) => input.webhook_events === undefined || input.webhook_url !== undefined, {
    path: ['webhook_events'],
    message: 'requires webhook_url',
  })
  .refine(
    (input) =>
      !input.karras || (KARRAS_SCHEDULER_CHOICES as readonly string[]).includes(input.scheduler ?? 'euler'),
    {
      path: ['karras'],
      message: `karras applies only to ${KARRAS_SCHEDULER_CHOICES.join(', ')}`,
    },
  )
  .openapi('CreateGenerationRequest', {
    description:
      'Unknown fields are rejected, and so are duplicate keys, malformed UTF-8, NUL characters and unpaired ' +
      'surrogates. width*height must not exceed the server pixel limit (MAX_PIXELS, 1048576 by default).',
    example: {
      prompt: 'a lighthouse on a cliff at dawn, oil painting',
      negative_prompt: 'blurry',
      width: 512,
      height: 512,
      steps: 25,
      guidance_scale: 7.5,
      seed: 42,
      num_images: 1,
    },
  });

export type CreateGenerationInput = z.output<typeof CreateGenerationRequest>;

export const GenerationIdParams = z.object({
  id: z.uuid().openapi({
    param: { name: 'id', in: 'path', description: 'The generation id.' },
    example: EXAMPLE_GENERATION_ID,
  }),
});

/**
 * The one example generation (queued): the component's example. The routes' examples are
 * variations of it (spread), and it satisfies the resource type, so a field added to the schema
 * must be added here too.
 */
export const EXAMPLE_GENERATION = {
  id: EXAMPLE_GENERATION_ID,
  object: 'generation',
  status: 'queued',
  model: 'sd15',
  prompt: 'a lighthouse on a cliff at dawn, oil painting',
  negative_prompt: 'blurry',
  prompt_en: null,
  translated: null,
  negative_prompt_en: null,
  width: 512,
  height: 512,
  steps: 25,
  guidance_scale: 7.5,
  seed: 42,
  num_images: 1,
  scheduler: null,
  requested_scheduler: null,
  karras: null,
  queue_position: 0,
  live_workers: 1,
  progress: null,
  eta: '2026-11-28T10:15:42.000Z',
  cancel_requested: false,
  outputs: [],
  error: null,
  attempts: 0,
  prompt_truncated: false,
  timings: {},
  created_at: '2026-11-28T10:15:30.123Z',
  started_at: null,
  finished_at: null,
} satisfies GenerationResource;

export const Generation = GenerationResourceSchema.openapi('Generation', { example: EXAMPLE_GENERATION });

const preferWait = (description: string) =>
  z
    .string()
    .optional()
    .openapi({ param: { name: 'Prefer', in: 'header', description }, example: 'wait=30' });

export const CancelGenerationHeaders = z.object({
  Prefer: preferWait(
    '`wait=N` (RFC 7240) holds the response for a running generation up to N seconds (1..60; larger ' +
      'values count as 60) until the worker has stopped it: then 200 with the finished generation, ' +
      'otherwise 202. `Preference-Applied` confirms the wait.',
  ),
});

export const CreateGenerationHeaders = z.object({
  'Idempotency-Key': z
    .string()
    .min(1)
    .max(255)
    .optional()
    .openapi({
      param: {
        name: 'Idempotency-Key',
        in: 'header',
        description:
          'Makes retries safe: within 24 hours, the same key with the same body (compared after ' +
          'validation and defaults) answers with the generation the first request created instead of ' +
          'creating another; the same key with a different body is refused with 422 ' +
          '`idempotency_key_reused`. Keys are scoped to the API key; after 24 hours a key may be reused.',
      },
      example: '5d7c1f9e-2f43-4b8a-9d0e-6a1b2c3d4e5f',
    }),
  Prefer: preferWait(
    '`wait=N` (RFC 7240) holds the response up to N seconds (1..60; larger values count as 60) ' +
      'until the generation has finished: then the answer is 200 with the finished generation, ' +
      'otherwise 202 as without the header. `Preference-Applied` confirms the wait.',
  ),
});

// created_after/created_before: instants a generation can have. Postgres refuses some that the
// ISO 8601 pattern allows (year 0000), and a cursor or a bound must mean the same in JS and SQL.
const EARLIEST_INSTANT = '1970-01-01T00:00:00Z';
const LATEST_INSTANT = '9999-12-31T23:59:59.999Z';
const instantBound = () =>
  z.iso.datetime({ offset: true, error: 'must be an ISO 8601 date-time with a time zone' }).refine(
    (value) => {
      const ms = Date.parse(value);
      // NaN: not a date-time at all, which the format check above reports.
      return Number.isNaN(ms) || (ms >= Date.parse(EARLIEST_INSTANT) && ms <= Date.parse(LATEST_INSTANT));
    },
    { error: `must be between ${EARLIEST_INSTANT} and ${LATEST_INSTANT}` },
  );

const STATUS_LIST = new RegExp(`^(${GENERATION_STATUSES.join('|')})(,(${GENERATION_STATUSES.join('|')}))*$`);

export const ListGenerationsQuery = z.object({
  limit: integerParam(z.int().min(1).max(100).default(20)).openapi({
    param: { name: 'limit', in: 'query', description: 'Page size: 1..100.' },
    example: 20,
  }),
  cursor: z
    .string()
    .optional()
    .openapi({
      param: {
        name: 'cursor',
        in: 'query',
        description:
          'Opaque: the `next_cursor` of the previous page, for the same API key; any other value is 422. ' +
          'Pages do not shift when generations are created meanwhile.',
      },
      example: 'AQAAAaIhpx5LC2-PLlweTTqaVz8fLYyeEOwrKtj-lXaOU24Piw',
    }),
  status: z
    .string()
    .regex(STATUS_LIST, {
      error: `must be one or more of ${GENERATION_STATUSES.join(', ')}, separated by commas`,
    })
    .optional()
    .openapi({
      param: {
        name: 'status',
        in: 'query',
        description: 'Only these statuses: one, or several separated by commas.',
      },
      example: 'queued,running',
    }),
  created_after: instantBound()
    .optional()
    .openapi({
      param: {
        name: 'created_after',
        in: 'query',
        description: `Only generations created after this instant (exclusive; ${EARLIEST_INSTANT} to ${LATEST_INSTANT}).`,
      },
      example: '2026-11-28T00:00:00Z',
    }),
  created_before: instantBound()
    .optional()
    .openapi({
      param: {
        name: 'created_before',
        in: 'query',
        description: `Only generations created before this instant (exclusive; ${EARLIEST_INSTANT} to ${LATEST_INSTANT}).`,
      },
      example: '2026-11-29T00:00:00Z',
    }),
});

export const GenerationList = z
  .object({
    object: z.literal('list'),
    data: z.array(Generation).openapi({ description: 'Newest first.' }),
    next_cursor: z.string().nullable().openapi({
      description: 'Pass as `cursor` to get the next page; null on the last page.',
      example: 'AQAAAaIhpx5LC2-PLlweTTqaVz8fLYyeEOwrKtj-lXaOU24Piw',
    }),
    has_more: z.boolean().openapi({ description: 'True when another page follows.', example: true }),
  })
  .openapi('GenerationList');

export type GenerationListResource = z.infer<typeof GenerationList>;

export const GenerationImageParams = GenerationIdParams.extend({
  index: integerParam(z.int().min(0)).openapi({
    param: { name: 'index', in: 'path', description: "The output's `index`." },
    example: 0,
  }),
});
