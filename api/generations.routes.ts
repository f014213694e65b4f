import { createRoute } from '@hono/zod-openapi';
import { CreateGenerationRequest, Generation, GenerationIdParams } from './generations.schemas.ts';
import { requireJson } from './middleware.ts';
import { problemResponse } from './responses.ts';

const security = [{ bearerAuth: [] }];
const COLLECTION = '/v1/generations';
const ITEM = '/v1/generations/0b6f8f2e-5c1e-4d3a-9a57-3f1f2d8c9e10';

const unauthorized = (instance: string) =>
  ({
    ...problemResponse('Missing, unknown or revoked API key.', instance, {
      code: 'unauthorized',
      detail: 'Send a valid key as "Authorization: Bearer <key>".',
    }),
    headers: {
      'WWW-Authenticate': { description: 'The auth scheme to use: `Bearer`.', schema: { type: 'string' } },
    },
  }) as const;

const unavailable = (instance: string) =>
  ({
    ...problemResponse('The database or the object store is unreachable; retry later.', instance, {
      code: 'service_unavailable',
      detail: 'The database is unreachable; retry later.',
    }),
    headers: { 'Retry-After': { description: 'Seconds to wait.', schema: { type: 'integer' } } },
  }) as const;

const internal = (instance: string) =>
  problemResponse('An unexpected error; the details are in the server log under request_id.', instance, {
    code: 'internal_error',
    detail: 'An unexpected error occurred.',
  });

export const createGenerationRoute = createRoute({
  method: 'post',
  path: '/v1/generations',
  operationId: 'createGeneration',
  tags: ['Generations'],
  summary: 'Queue a text-to-image generation',
  description:
    'Validates the request, stores the generation and queues its job in one transaction, and answers ' +
    'at once. Poll the URL in `Location` until `status` is `succeeded`, `failed` or `canceled`.',
  security,
  middleware: [requireJson] as const,
  request: {
    body: {
      required: true,
      content: { 'application/json': { schema: CreateGenerationRequest } },
    },
  },
  responses: {
    202: {
      description: 'Accepted and queued.',
      headers: {
        Location: {
          description: 'The URL of the new generation.',
          schema: { type: 'string', example: ITEM },
        },
      },
      content: { 'application/json': { schema: Generation } },
    },
    400: problemResponse('The body is not valid JSON.', COLLECTION, {
      code: 'invalid_json',
      detail: 'The request body could not be parsed as JSON.',
    }),
    401: unauthorized(COLLECTION),
    413: problemResponse('The body is larger than the server limit (BODY_LIMIT_BYTES).', COLLECTION, {
      code: 'payload_too_large',
      detail: 'The body must not exceed 65536 bytes.',
    }),
    415: problemResponse('The body is not application/json.', COLLECTION, {
      code: 'unsupported_media_type',
      detail: 'Send the request body as application/json.',
    }),
    422: problemResponse(
      'A field is missing, unknown, of the wrong type or out of range; `errors` names each field.',
      COLLECTION,
      {
        code: 'validation_failed',
        summary: 'Invalid fields',
        detail: 'The request body has 2 invalid fields.',
        errors: [
          { field: 'width', message: 'must be a multiple of 8' },
          { field: 'colour', message: 'unknown field' },
        ],
      },
      {
        code: 'pixel_limit_exceeded',
        summary: 'width*height over the limit',
        detail: 'width*height is 4194304 pixels; the limit is 1048576.',
        errors: [
          { field: 'width', message: 'width*height must not exceed 1048576 pixels' },
          { field: 'height', message: 'width*height must not exceed 1048576 pixels' },
        ],
      },
    ),
    500: internal(COLLECTION),
    503: unavailable(COLLECTION),
  },
});

export const getGenerationRoute = createRoute({
  method: 'get',
  path: '/v1/generations/{id}',
  operationId: 'getGeneration',
  tags: ['Generations'],
  summary: 'Get a generation',
  description:
    'The generation as it is now. While queued, `queue_position` counts the generations ahead of it. ' +
    'Once succeeded, every read mints fresh presigned output URLs valid until `expires_at`.',
  security,
  request: { params: GenerationIdParams },
  responses: {
    200: { description: 'The generation.', content: { 'application/json': { schema: Generation } } },
    401: unauthorized(ITEM),
    404: problemResponse(
      'No generation with this id belongs to the calling key (or the id is not a UUID).',
      ITEM,
      { code: 'not_found', detail: 'No generation with this id.' },
    ),
    500: internal(ITEM),
    503: unavailable(ITEM),
  },
});
