// One zod schema per shape: these drive request validation, handler types and openapi.yaml.
import { z } from '@hono/zod-openapi';
import { GENERATION_STATUSES, WEBHOOK_EVENT_TYPES } from '../db/types.ts';
import { KARRAS_SCHEDULER_CHOICES, SCHEDULER_CHOICES } from '../shared/generation-contract.ts';
import { ERROR_CODES } from './errors.ts';
import { integerParam } from './integer-param.ts';

const EXAMPLE_ID = '0b6f8f2e-5c1e-4d3a-9a57-3f1f2d8c9e10';

const dimension = (name: string) =>
  z
    .int()
    .min(64)
    .max(2048)
    .multipleOf(8)
    .default(512)
    .openapi({ description: `Image ${name} in pixels: a multiple of 8 in 64..2048.`, example: 512 });

export const CreateGenerationRequest = z
  .strictObject({
    prompt: z
      .string()
      .trim()
      .min(1)
      .max(2000)
      .openapi({ description: 'What to draw. Leading and trailing whitespace is removed.' }),
    negative_prompt: z
      .string()
      .max(2000)
      .default('')
      .openapi({ description: 'What to steer away from.', example: 'blurry, low quality' }),
    width: dimension('width'),
    height: dimension('height'),
    steps: z.int().min(1).max(150).default(25).openapi({ description: 'Denoising steps.', example: 25 }),
    guidance_scale: z
      .number()
      .min(0)
      .max(30)
      .default(7.5)
      .openapi({ description: 'Classifier-free guidance strength.', example: 7.5 }),
    seed: z.int().min(0).max(4_294_967_295).optional().openapi({
      description: 'Random seed for reproducible results; chosen by the server when absent.',
      example: 42,
    }),
    num_images: z.int().min(1).max(4).default(1).openapi({ description: 'Images to generate.', example: 1 }),
    scheduler: z.enum(SCHEDULER_CHOICES).optional().openapi({
      description:
        "Sampler: euler, euler_a (Euler ancestral), ddim, lcm or dpmpp_2m (DPM++ 2M). Absent: the model's own scheduler configuration decides.",
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
    example: EXAMPLE_ID,
  }),
});

const isoTime = z.iso.datetime().openapi({ example: '2026-11-28T10:15:30.123Z' });

export const GenerationOutput = z
  .object({
    index: z.int().min(0).openapi({ example: 0 }),
    url: z.url().openapi({
      description: 'Presigned GET URL, minted on every read; fetch it before expires_at.',
      example: `https://s3.example.com/easel/generations/${EXAMPLE_ID}/0.jpg?X-Amz-Signature=...`,
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

export const StageTimings = z
  .object({
    translate_ms: z.number().optional(),
    encode_ms: z.number().optional(),
    denoise_ms: z.number().optional(),
    decode_ms: z.number().optional(),
    jpeg_ms: z.number().optional(),
    upload_ms: z.number().optional(),
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

/**
 * The one example generation (queued). The routes' examples are variations of it, typed as the
 * resource there so that a field added to the schema must be added here too.
 */
export const EXAMPLE_GENERATION = {
  id: EXAMPLE_ID,
  object: 'generation' as const,
  status: 'queued' as const,
  prompt: 'a lighthouse on a cliff at dawn, oil painting',
  negative_prompt: 'blurry',
  prompt_en: null,
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
};

export const Generation = z
  .object({
    id: z.uuid().openapi({ example: EXAMPLE_ID }),
    object: z.literal('generation'),
    status: z.enum(GENERATION_STATUSES).openapi({ example: 'queued' }),
    prompt: z.string(),
    negative_prompt: z.string(),
    prompt_en: z.string().nullable().openapi({
      description:
        'The prompt the text encoder received: the English translation of a Russian prompt, else the prompt itself. Null until the worker has taken the generation.',
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
      description: 'Queued generations ahead of this one (0 = next); null unless status is queued.',
      example: 0,
    }),
    progress: z.union([GenerationProgress, z.null()]).openapi({
      description: 'Null until the worker has finished a denoising step, and while queued.',
    }),
    eta: isoTime.nullable().openapi({
      description:
        'An estimate of when the generation will finish; null when finished or when there is nothing to ' +
        "estimate from. Running: now + the remaining steps × the attempt's moving-average step time " +
        '(decoding and upload add a little). Queued: now + (queue_position + 1) × the mean run time of ' +
        'the last 20 succeeded generations ÷ the workers active in the last 5 minutes (at least 1).',
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
  })
  .openapi('Generation', { example: EXAMPLE_GENERATION });

export type GenerationResource = z.infer<typeof Generation>;

export const Problem = z
  .object({
    type: z.string().openapi({ example: 'urn:easel:problem:validation_failed' }),
    title: z.string().openapi({ example: 'Request validation failed' }),
    status: z.int().openapi({ example: 422 }),
    detail: z.string().openapi({ example: 'The request body has 1 invalid field.' }),
    code: z.enum(ERROR_CODES as [string, ...string[]]).openapi({ example: 'validation_failed' }),
    instance: z.string().openapi({ description: 'The request path.', example: '/v1/generations' }),
    request_id: z.string().openapi({ example: 'f1c2a3b4-0000-4000-8000-000000000000' }),
    errors: z
      .array(
        z.object({
          field: z.string().openapi({ example: 'width' }),
          message: z.string().openapi({ example: 'must be a multiple of 8' }),
        }),
      )
      .optional()
      .openapi({ description: 'Present on validation errors: one entry per offending field.' }),
  })
  .openapi('Problem', { description: 'RFC 9457 problem details.' });

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
