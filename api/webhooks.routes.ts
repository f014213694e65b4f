import { createRoute } from '@hono/zod-openapi';
import { EXAMPLE_GENERATION_ID } from '../shared/generation.schemas.ts';
import { GenerationIdParams } from './generations.schemas.ts';
import {
  internalErrorResponse,
  payloadTooLargeResponse,
  problemResponse,
  unauthorizedResponse,
  unavailableResponse,
} from './responses.ts';
import {
  DisabledWebhookUrlIdParams,
  DisabledWebhookUrlList,
  WebhookDeliveryIdParams,
  WebhookDeliveryList,
  WebhookRedelivery,
  WebhookSecret,
} from './webhooks.schemas.ts';

const security = [{ bearerAuth: [] }];
const SECRET = '/v1/webhooks/secret';
const LOG = `/v1/generations/${EXAMPLE_GENERATION_ID}/webhook-deliveries`;
const REDELIVER = '/v1/webhook-deliveries/5f0c9a7e-1b2d-4c3e-8f9a-0b1c2d3e4f5a/redeliver';
const DISABLED = '/v1/webhooks/disabled-urls';
const DISABLED_ITEM = '/v1/webhooks/disabled-urls/7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f';

const unauthorized = unauthorizedResponse;
const internal = internalErrorResponse;
const unavailable = (instance: string) =>
  unavailableResponse(instance, 'The database is unreachable; retry later.');

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
    413: payloadTooLargeResponse(REDELIVER),
    500: internal(REDELIVER),
    503: unavailable(REDELIVER),
  },
});

export const listDisabledWebhookUrlsRoute = createRoute({
  method: 'get',
  path: '/v1/webhooks/disabled-urls',
  operationId: 'listDisabledWebhookUrls',
  tags: ['Webhooks'],
  summary: "The calling key's disabled webhook URLs",
  description:
    'A receiver that answers 410 Gone disables its URL for the key whose event it was: from then on no ' +
    "event of any of the key's generations is sent to it (events pending at that moment included); " +
    'each is listed in its delivery log with outcome `skipped_disabled`. Creates naming a disabled URL ' +
    'are still accepted, and their events are skipped the same way. Oldest first.',
  security,
  responses: {
    200: {
      description: 'The disabled URLs.',
      content: { 'application/json': { schema: DisabledWebhookUrlList } },
    },
    401: unauthorized(DISABLED),
    500: internal(DISABLED),
    503: unavailable(DISABLED),
  },
});

export const enableWebhookUrlRoute = createRoute({
  method: 'delete',
  path: '/v1/webhooks/disabled-urls/{id}',
  operationId: 'enableWebhookUrl',
  tags: ['Webhooks'],
  summary: 'Re-enable a disabled webhook URL',
  description:
    'Deletes the entry: events written from now on are sent to the URL again. Events skipped while it ' +
    'was disabled stay skipped; `POST /v1/webhook-deliveries/{id}/redeliver` sends one again. The same as ' +
    '`easel keys enable-webhook-url`.',
  security,
  request: { params: DisabledWebhookUrlIdParams },
  responses: {
    204: { description: 'Re-enabled.' },
    401: unauthorized(DISABLED_ITEM),
    404: problemResponse(
      'The calling key has no disabled URL with this id (never, or already re-enabled).',
      DISABLED_ITEM,
      { code: 'not_found', detail: 'No disabled webhook URL with this id.' },
    ),
    500: internal(DISABLED_ITEM),
    503: unavailable(DISABLED_ITEM),
  },
});
