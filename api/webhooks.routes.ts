import { createRoute } from '@hono/zod-openapi';
import { RETRY_AFTER_SECONDS } from './errors.ts';
import { GenerationIdParams } from './generations.schemas.ts';
import { problemResponse } from './responses.ts';
import {
  WebhookDeliveryIdParams,
  WebhookDeliveryList,
  WebhookRedelivery,
  WebhookSecret,
} from './webhooks.schemas.ts';

const security = [{ bearerAuth: [] }];
const SECRET = '/v1/webhooks/secret';
const LOG = '/v1/generations/0b6f8f2e-5c1e-4d3a-9a57-3f1f2d8c9e10/webhook-deliveries';
const REDELIVER = '/v1/webhook-deliveries/5f0c9a7e-1b2d-4c3e-8f9a-0b1c2d3e4f5a/redeliver';

const unauthorized = (instance: string) =>
  problemResponse('Missing, unknown or revoked API key.', instance, {
    code: 'unauthorized',
    detail: 'Send a valid key as "Authorization: Bearer <key>".',
  });
const internal = (instance: string) =>
  problemResponse('An unexpected error; the details are in the server log under request_id.', instance, {
    code: 'internal_error',
    detail: 'An unexpected error occurred.',
  });
const unavailable = (instance: string) =>
  ({
    ...problemResponse('The database is unreachable; retry later.', instance, {
      code: 'service_unavailable',
      detail: 'The database is unreachable; retry later.',
    }),
    headers: {
      'Retry-After': {
        description: 'Seconds to wait before retrying.',
        schema: { type: 'integer', example: RETRY_AFTER_SECONDS },
      },
    },
  }) as const;

export const getWebhookSecretRoute = createRoute({
  method: 'get',
  path: '/v1/webhooks/secret',
  operationId: 'getWebhookSecret',
  tags: ['Webhooks'],
  summary: "The calling key's webhook signing secret",
  description:
    'Webhooks for the generations this key creates are signed with this secret (Standard Webhooks). ' +
    'Verify them with any Standard Webhooks library, e.g. `new Webhook(secret).verify(body, headers)`.',
  security,
  responses: {
    200: { description: 'The secret.', content: { 'application/json': { schema: WebhookSecret } } },
    401: unauthorized(SECRET),
    500: internal(SECRET),
    503: unavailable(SECRET),
  },
});

export const listWebhookDeliveriesRoute = createRoute({
  method: 'get',
  path: '/v1/generations/{id}/webhook-deliveries',
  operationId: 'listWebhookDeliveries',
  tags: ['Webhooks'],
  summary: "A generation's webhook delivery log",
  description: 'Every attempt to deliver every webhook event of the generation, oldest first.',
  security,
  request: { params: GenerationIdParams },
  responses: {
    200: { description: 'The log.', content: { 'application/json': { schema: WebhookDeliveryList } } },
    401: unauthorized(LOG),
    404: problemResponse('No generation with this id belongs to the calling key.', LOG, {
      code: 'not_found',
      detail: 'No generation with this id.',
    }),
    500: internal(LOG),
    503: unavailable(LOG),
  },
});

export const redeliverWebhookRoute = createRoute({
  method: 'post',
  path: '/v1/webhook-deliveries/{id}/redeliver',
  operationId: 'redeliverWebhook',
  tags: ['Webhooks'],
  summary: 'Send a webhook event again',
  description:
    "Queues one more attempt of the delivery's event, now, with the same `webhook-id` (receivers " +
    'that deduplicate ignore it if they processed it before). A failed redelivery is not retried. No request body.',
  security,
  request: { params: WebhookDeliveryIdParams },
  responses: {
    202: { description: 'Queued.', content: { 'application/json': { schema: WebhookRedelivery } } },
    401: unauthorized(REDELIVER),
    404: problemResponse('No delivery with this id belongs to the calling key.', REDELIVER, {
      code: 'not_found',
      detail: 'No webhook delivery with this id.',
    }),
    500: internal(REDELIVER),
    503: unavailable(REDELIVER),
  },
});
