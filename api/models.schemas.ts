// Model shapes for GET /v1/models: what a client may ask each model for, and whether the fleet can
// run it now. The capabilities are the shared schema the worker validates (shared/), not a copy.
import { z } from '@hono/zod-openapi';
import { ModelCapabilitiesSchema } from '../shared/model-capabilities.ts';

const isoTime = z.iso.datetime().openapi({ example: '2026-11-28T10:15:30.123Z' });

const EXAMPLE_CAPABILITIES = {
  samplers: ['euler', 'euler_a', 'ddim', 'lcm', 'dpmpp_2m'],
  karras_samplers: ['euler', 'euler_a', 'dpmpp_2m'],
  default_sampler: 'euler_a',
  width: { min: 64, max: 2048, multiple_of: 8, default: 512 },
  height: { min: 64, max: 2048, multiple_of: 8, default: 512 },
  steps: { min: 1, max: 150, default: 25 },
  guidance_scale: { min: 0, max: 30, default: 7.5 },
  negative_prompt: true,
  languages: ['en'],
  max_images: 4,
};

const EXAMPLE_MODEL = {
  object: 'model',
  id: 'sd15',
  family: 'stable-diffusion',
  capabilities: EXAMPLE_CAPABILITIES,
  defaults: { width: 512, height: 512, steps: 25, guidance_scale: 7.5, scheduler: 'euler_a' },
  status: 'available',
  live_workers: 2,
  queued: 14,
  running: 2,
  median_run_ms: 4180,
  content_hash: 'sha256:9f2c4e7d1a0b3c5e8f6a2d4b7c9e1f3a5b7d9c2e4f6a8b0c1d3e5f7a9b2c4d6e',
  announced_at: '2026-11-28T08:00:02.512Z',
  retired_at: null,
  created_at: '2026-11-20T09:30:00.000Z',
} as const;

export const ListModelsQuery = z.object({
  include_retired: z
    .enum(['true', 'false'], { error: 'must be true or false' })
    .default('false')
    .transform((value) => value === 'true')
    .openapi({
      param: {
        name: 'include_retired',
        in: 'query',
        description:
          'Also list retired models (`status: retired`): they take no new generations, but ' +
          'generations already queued for them still run and keep naming them.',
      },
      example: 'true',
    }),
});

export const ModelIdParams = z.object({
  id: z.string().openapi({
    param: {
      name: 'id',
      in: 'path',
      description: "The model id, as a generation's `model` names it (`GET /v1/models` lists them).",
    },
    example: EXAMPLE_MODEL.id,
  }),
});

export const ModelDefaults = z
  .object({
    width: z.int().openapi({ example: 512 }),
    height: z.int().openapi({ example: 512 }),
    steps: z.int().openapi({ example: 25 }),
    guidance_scale: z.number().openapi({ example: 7.5 }),
    scheduler: z.string().openapi({
      description: "The sampler that runs without `scheduler` (the capabilities' `default_sampler`).",
      example: 'euler_a',
    }),
  })
  .openapi({
    description:
      "What a generation on this model gets for each parameter it leaves out: the capabilities' defaults, " +
      'gathered in one place for clients filling a form.',
  });

export const MODEL_STATUSES = ['available', 'no_workers', 'retired'] as const;

export const Model = z
  .object({
    object: z.literal('model'),
    id: z.string().openapi({
      description: "What a generation's `model` names: lowercase letters, digits, `.`, `_` and `-`.",
      example: EXAMPLE_MODEL.id,
    }),
    family: z.string().openapi({
      description: 'The pipeline family that runs it, e.g. `stable-diffusion`.',
      example: EXAMPLE_MODEL.family,
    }),
    capabilities: ModelCapabilitiesSchema,
    defaults: ModelDefaults,
    status: z.enum(MODEL_STATUSES).openapi({
      description:
        '`available`: at least one live worker holds it warm. `no_workers`: generations are accepted ' +
        'and wait in its queue until a worker holding it starts. `retired`: new generations are refused ' +
        '(422 `model_not_found`).',
      example: 'available',
    }),
    live_workers: z.int().min(0).openapi({
      description: 'Workers holding it that heartbeated within WORKER_STALE_SECONDS and have not stopped.',
      example: EXAMPLE_MODEL.live_workers,
    }),
    queued: z.int().min(0).openapi({ description: 'Its generations waiting for a worker.', example: 14 }),
    running: z.int().min(0).openapi({ description: 'Its generations running now.', example: 2 }),
    median_run_ms: z.int().min(0).nullable().openapi({
      description:
        'Median milliseconds from start to finish of its recent succeeded generations; null before it has run any.',
      example: EXAMPLE_MODEL.median_run_ms,
    }),
    content_hash: z
      .string()
      .nullable()
      .openapi({
        description:
          "Hash of the model folder's files as its last worker announced them; null when only an operator " +
          'registered it so far. Workers holding different files of one id show up as a changing hash.',
        example: EXAMPLE_MODEL.content_hash,
      }),
    announced_at: isoTime.nullable().openapi({ description: 'When a worker holding it last started.' }),
    retired_at: isoTime
      .nullable()
      .openapi({ description: 'When an operator retired it (`easel models retire`).' }),
    created_at: isoTime,
  })
  .openapi('Model', { example: EXAMPLE_MODEL });

export type ModelResource = z.infer<typeof Model>;

export const ModelList = z
  .object({
    object: z.literal('list'),
    data: z.array(Model).openapi({ description: 'By id.' }),
  })
  .openapi('ModelList', { example: { object: 'list', data: [EXAMPLE_MODEL] } });
