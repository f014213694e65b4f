import { createRoute } from '@hono/zod-openapi';
import { EXAMPLE_GENERATION_ID, type GenerationResource } from '../shared/generation.schemas.ts';
import {
  IN_FLIGHT_RETRY_AFTER_SECONDS,
  QUEUE_FULL_RETRY_AFTER_SECONDS,
  RETRY_AFTER_SECONDS,
} from './errors.ts';
import {
  CancelGenerationHeaders,
  CreateGenerationHeaders,
  CreateGenerationRequest,
  EXAMPLE_GENERATION,
  Generation,
  GenerationIdParams,
  GenerationImageParams,
  GenerationList,
  ListGenerationsQuery,
} from './generations.schemas.ts';
import { requireJson } from './middleware.ts';
import {
  internalErrorResponse,
  payloadTooLargeResponse,
  problemResponse,
  retryAfterHeader,
  unauthorizedResponse,
  unavailableResponse,
} from './responses.ts';

const security = [{ bearerAuth: [] }];
const COLLECTION = '/v1/generations';
const ITEM = `/v1/generations/${EXAMPLE_GENERATION_ID}`;

const unauthorized = unauthorizedResponse;
const internal = internalErrorResponse;
const unavailable = unavailableResponse;

/** The Generation component's example, and variations of it: one per state the routes show. */
const queued: GenerationResource = EXAMPLE_GENERATION;
const running: GenerationResource = {
  ...queued,
  status: 'running',
  prompt_en: queued.prompt,
  negative_prompt_en: queued.negative_prompt,
  queue_position: null,
  progress: { step: 8, total: 25 },
  eta: '2026-11-28T10:15:38.120Z',
  attempts: 1,
  timings: { queued_ms: 17 },
  started_at: '2026-11-28T10:15:30.140Z',
};
const succeeded: GenerationResource = {
  ...running,
  status: 'succeeded',
  scheduler: 'dpmpp_2m',
  requested_scheduler: 'dpmpp_2m',
  progress: { step: 25, total: 25 },
  eta: null,
  outputs: [
    {
      index: 0,
      url: `https://s3.example.com/easel/generations/${queued.id}/0.jpg?X-Amz-Signature=...`,
      expires_at: '2026-11-28T11:15:41.500Z',
      width: 512,
      height: 512,
      content_type: 'image/jpeg',
      bytes: 48213,
      sha256: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
    },
  ],
  timings: {
    encode_ms: 12,
    denoise_ms: 8410,
    decode_ms: 240,
    jpeg_ms: 7,
    upload_ms: 31,
    queued_ms: 17,
    run_ms: 8881,
  },
  finished_at: '2026-11-28T10:15:39.021Z',
};
const cancelRequested: GenerationResource = { ...running, cancel_requested: true };
const canceled: GenerationResource = {
  ...cancelRequested,
  status: 'canceled',
  progress: { step: 9, total: 25 },
  eta: null,
  timings: { queued_ms: 17, run_ms: 3120 },
  finished_at: '2026-11-28T10:15:33.260Z',
};

export const createGenerationRoute = createRoute({
  method: 'post',
  path: '/v1/generations',
  operationId: 'createGeneration',
  tags: ['Generations'],
  summary: 'Queue a text-to-image generation',
  description:
    'Validates the request, stores the generation and queues its job in one transaction, and answers ' +
    'at once. Poll the URL in `Location` until `status` is `succeeded`, `failed` or `canceled`, or ' +
    'send `Prefer: wait=N` to have the answer held until then (at most N seconds). Send an ' +
    '`Idempotency-Key` to retry safely after a network error.',
  security,
  middleware: [requireJson] as const,
  request: {
    headers: CreateGenerationHeaders,
    body: {
      required: true,
      content: { 'application/json': { schema: CreateGenerationRequest } },
    },
  },
  responses: {
    200: {
      description:
        'Only with `Prefer: wait=N`: the generation finished (`succeeded`, `failed` or `canceled`) within N seconds.',
      headers: {
        Location: { description: 'The URL of the generation.', schema: { type: 'string', example: ITEM } },
        'Preference-Applied': {
          description: 'The wait the server applied, in seconds.',
          schema: { type: 'string', example: 'wait=30' },
        },
        'Idempotent-Replayed': {
          description:
            '`true` when an earlier request with the same Idempotency-Key created this generation.',
          schema: { type: 'string', enum: ['true'] },
        },
      },
      content: {
        'application/json': {
          schema: Generation,
          example: succeeded,
        },
      },
    },
    202: {
      description:
        'Accepted and queued (or, with `Prefer: wait=N`, not finished within N seconds). With an ' +
        'Idempotency-Key seen before, the generation the first request created, as it is now.',
      headers: {
        Location: {
          description: 'The URL of the new generation.',
          schema: { type: 'string', example: ITEM },
        },
        'Preference-Applied': {
          description: 'Present when `Prefer: wait` was honoured (the server waited, in vain).',
          schema: { type: 'string', example: 'wait=30' },
        },
        'Idempotent-Replayed': {
          description:
            '`true` when an earlier request with the same Idempotency-Key created this generation.',
          schema: { type: 'string', enum: ['true'] },
        },
      },
      content: { 'application/json': { schema: Generation } },
    },
    400: problemResponse('The body is not valid JSON.', COLLECTION, {
      code: 'invalid_json',
      detail: 'The request body could not be parsed as JSON.',
    }),
    401: unauthorized(COLLECTION),
    413: payloadTooLargeResponse(COLLECTION),
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
      {
        code: 'idempotency_key_reused',
        summary: 'Idempotency-Key used with another body',
        detail: 'This Idempotency-Key was used in the last 24 hours with a different request body.',
        errors: [{ field: 'Idempotency-Key', message: 'already used with a different request body' }],
      },
      {
        code: 'webhook_url_forbidden',
        summary: 'webhook_url at a loopback, private or link-local address',
        detail: 'The webhook URL points at a forbidden address (169.254.169.254).',
        errors: [{ field: 'webhook_url', message: 'points at a forbidden address (169.254.169.254)' }],
      },
      {
        code: 'model_not_found',
        summary: 'No such model, or it is retired',
        detail: "No such model: 'sdxl'. Available: sd15, sd-turbo.",
        errors: [{ field: 'model', message: 'is not a model this service has' }],
      },
      {
        code: 'model_required',
        summary: 'Several models and no default',
        detail: 'This service has several models and no default: name one (sd15, sd-turbo).',
        errors: [{ field: 'model', message: 'is required: there are several models and no default' }],
      },
      {
        code: 'unsupported_by_model',
        summary: "A value outside the model's capabilities",
        detail:
          "Model 'sd-turbo' cannot run these 2 values: scheduler, steps (its capabilities: GET /v1/models/sd-turbo).",
        errors: [
          { field: 'scheduler', message: "model 'sd-turbo' offers euler_a, lcm" },
          { field: 'steps', message: "model 'sd-turbo' takes steps 1..8" },
        ],
      },
    ),
    429: {
      ...problemResponse(
        "The API key already has its limit of generations queued or running (the key's max_in_flight, else " +
          'MAX_IN_FLIGHT_PER_KEY): `too_many_in_flight`, retry when one has finished. Or a daily quota of the key ' +
          '(images per UTC day, accelerator seconds per UTC day) is used up: `quota_exceeded`, whose `quota` ' +
          'member names the limit and whose Retry-After runs to 00:00 UTC. A generation already accepted is ' +
          'never refused later.',
        COLLECTION,
        {
          code: 'too_many_in_flight',
          detail:
            'This API key already has 50 generations queued or running, its limit; retry when one has finished.',
        },
        {
          code: 'quota_exceeded',
          detail:
            'This API key may create 100 images per UTC day; 98 are used or on their way, and this request asks ' +
            'for 4. The count starts again at 2026-12-01T00:00:00.000Z.',
          members: {
            quota: {
              limit: 'images_per_day',
              limit_value: 100,
              used: 98,
              requested: 4,
              resets_at: '2026-12-01T00:00:00.000Z',
            },
          },
        },
      ),
      headers: { 'Retry-After': retryAfterHeader(IN_FLIGHT_RETRY_AFTER_SECONDS) },
    },
    500: internal(COLLECTION),
    503: unavailable(
      COLLECTION,
      'The generation queue is full (MAX_QUEUED), or the database or the object store is unreachable. ' +
        `Retry after ${QUEUE_FULL_RETRY_AFTER_SECONDS} s and ${RETRY_AFTER_SECONDS} s respectively (see Retry-After). ` +
        'Also `no_models` while no model is registered yet (a new deployment whose workers have not started).',
      QUEUE_FULL_RETRY_AFTER_SECONDS,
      { code: 'queue_full', detail: 'The generation queue is full; retry later.' },
      {
        code: 'no_models',
        detail: 'No model is registered yet: start a worker, or register one with `easel models register`.',
      },
    ),
  },
});

export const getGenerationRoute = createRoute({
  method: 'get',
  path: '/v1/generations/{id}',
  operationId: 'getGeneration',
  tags: ['Generations'],
  summary: 'Get a generation',
  description:
    'The generation as it is now. While queued, `queue_position` counts the generations ahead of it; ' +
    'while running, `progress` counts denoising steps; `eta` estimates when it will finish. ' +
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

export const listGenerationsRoute = createRoute({
  method: 'get',
  path: '/v1/generations',
  operationId: 'listGenerations',
  tags: ['Generations'],
  summary: "List the calling key's generations",
  description:
    'Newest first, a page at a time: pass `next_cursor` as `cursor` while `has_more` is true. Cursors ' +
    'are positions, not offsets, so generations created while paging never shift later pages.',
  security,
  request: { query: ListGenerationsQuery },
  responses: {
    200: {
      description: 'One page.',
      content: {
        'application/json': {
          schema: GenerationList,
          example: {
            object: 'list',
            data: [queued],
            next_cursor: 'AQAAAaIhpx5LC2-PLlweTTqaVz8fLYyeEOwrKtj-lXaOU24Piw',
            has_more: true,
          },
        },
      },
    },
    401: unauthorized(COLLECTION),
    422: problemResponse('A query parameter is invalid; `errors` names it.', COLLECTION, {
      code: 'validation_failed',
      detail: 'The request query has 1 invalid field.',
      errors: [{ field: 'cursor', message: 'is not a next_cursor this API returned' }],
    }),
    500: internal(COLLECTION),
    503: unavailable(COLLECTION),
  },
});

const IMAGE = `${ITEM}/images/0`;

export const getGenerationImageRoute = createRoute({
  method: 'get',
  path: '/v1/generations/{id}/images/{index}',
  operationId: 'getGenerationImage',
  tags: ['Generations'],
  summary: 'Redirect to an image of a succeeded generation',
  description:
    'A stable link to one output: answers 302 to a freshly presigned URL (valid for ' +
    'RESULT_URL_TTL_SECONDS), so it can be embedded where the expiring URLs cannot.',
  security,
  request: { params: GenerationImageParams },
  responses: {
    302: {
      description: 'Found: follow `Location` to download the JPEG.',
      headers: {
        Location: {
          description: 'A presigned URL of the image, minted for this request.',
          schema: {
            type: 'string',
            format: 'uri',
            example: `https://s3.example.com/easel/generations/${EXAMPLE_GENERATION_ID}/0.jpg?X-Amz-Signature=...`,
          },
        },
        'Cache-Control': {
          description: 'The URL expires, so the redirect must not be cached.',
          schema: { type: 'string', example: 'no-store' },
        },
      },
    },
    401: unauthorized(IMAGE),
    404: problemResponse(
      'No such generation for the calling key, it has not succeeded, or it has no image with this index.',
      IMAGE,
      { code: 'not_found', detail: 'No image with this index for this generation.' },
    ),
    422: problemResponse('The index is not a whole number in decimal digits; `errors` names it.', IMAGE, {
      code: 'validation_failed',
      detail: 'The request path has 1 invalid field.',
      errors: [{ field: 'index', message: 'must be a whole number written in decimal digits (0-9)' }],
    }),
    500: internal(IMAGE),
    503: unavailable(IMAGE),
  },
});

const CANCEL = `${ITEM}/cancel`;

export const cancelGenerationRoute = createRoute({
  method: 'post',
  path: '/v1/generations/{id}/cancel',
  operationId: 'cancelGeneration',
  tags: ['Generations'],
  summary: 'Cancel a generation',
  description:
    'A queued generation is canceled at once (200, `canceled`) and never runs. A running one is ' +
    'stopped by its worker at the next denoising step: the answer is 202 with `status: running` and ' +
    '`cancel_requested: true`, and the generation becomes `canceled` shortly after (poll it, or send ' +
    '`Prefer: wait=N` to have the answer held until then). If its images were already being stored, ' +
    'it ends `succeeded` instead. Canceling a canceled generation again answers 200 and changes ' +
    'nothing; a succeeded or failed one answers 409 `generation_finished`. No request body.',
  security,
  request: { params: GenerationIdParams, headers: CancelGenerationHeaders },
  responses: {
    200: {
      description:
        'Canceled (now, or earlier), or, with `Prefer: wait=N`, finished within N seconds after the request.',
      headers: {
        'Preference-Applied': {
          description: 'The wait the server applied, in seconds.',
          schema: { type: 'string', example: 'wait=30' },
        },
      },
      content: { 'application/json': { schema: Generation, example: canceled } },
    },
    202: {
      description:
        'Running: the cancel is recorded and the worker will stop the generation at its next denoising step.',
      headers: {
        'Preference-Applied': {
          description: 'Present when `Prefer: wait` was honoured (the server waited, in vain).',
          schema: { type: 'string', example: 'wait=30' },
        },
      },
      content: {
        'application/json': {
          schema: Generation,
          example: cancelRequested,
        },
      },
    },
    401: unauthorized(CANCEL),
    404: problemResponse(
      'No generation with this id belongs to the calling key (or the id is not a UUID).',
      CANCEL,
      { code: 'not_found', detail: 'No generation with this id.' },
    ),
    409: problemResponse('The generation has already succeeded or failed.', CANCEL, {
      code: 'generation_finished',
      detail: 'The generation has already succeeded; there is nothing to cancel.',
    }),
    413: payloadTooLargeResponse(CANCEL),
    500: internal(CANCEL),
    503: unavailable(CANCEL),
  },
});
