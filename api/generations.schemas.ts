// One zod schema per shape: these drive request validation, handler types and openapi.yaml.
import { z } from '@hono/zod-openapi';
import { GENERATION_STATUSES } from '../db/types.ts';
import { ERROR_CODES } from './errors.ts';

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
  })
  .openapi('CreateGenerationRequest', {
    description:
      'Unknown fields are rejected. width*height must not exceed the server pixel limit (MAX_PIXELS, 1048576 by default).',
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
    encode_ms: z.number().optional(),
    denoise_ms: z.number().optional(),
    decode_ms: z.number().optional(),
    jpeg_ms: z.number().optional(),
    upload_ms: z.number().optional(),
  })
  .openapi('StageTimings', { description: 'Milliseconds per pipeline stage of the successful attempt.' });

export const Generation = z
  .object({
    id: z.uuid().openapi({ example: EXAMPLE_ID }),
    object: z.literal('generation'),
    status: z.enum(GENERATION_STATUSES).openapi({ example: 'queued' }),
    prompt: z.string(),
    negative_prompt: z.string(),
    width: z.int(),
    height: z.int(),
    steps: z.int(),
    guidance_scale: z.number(),
    seed: z.int().openapi({ description: 'The seed used (the request value or the one the server chose).' }),
    num_images: z.int(),
    scheduler: z.string().nullable().openapi({ description: 'Sampler the worker used; null until it ran.' }),
    queue_position: z.int().min(0).nullable().openapi({
      description: 'Queued generations ahead of this one (0 = next); null unless status is queued.',
      example: 0,
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
  .openapi('Generation', {
    example: {
      id: EXAMPLE_ID,
      object: 'generation',
      status: 'queued',
      prompt: 'a lighthouse on a cliff at dawn, oil painting',
      negative_prompt: 'blurry',
      width: 512,
      height: 512,
      steps: 25,
      guidance_scale: 7.5,
      seed: 42,
      num_images: 1,
      scheduler: null,
      queue_position: 0,
      outputs: [],
      error: null,
      attempts: 0,
      prompt_truncated: false,
      timings: {},
      created_at: '2026-11-28T10:15:30.123Z',
      started_at: null,
      finished_at: null,
    },
  });

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
