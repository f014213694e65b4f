// Webhook shapes: the signing secret, the delivery log, a redelivery, the disabled URLs.
import { z } from '@hono/zod-openapi';
import { WEBHOOK_DELIVERY_OUTCOMES, WEBHOOK_EVENT_TYPES } from '../db/types.ts';

const isoTime = z.iso.datetime().openapi({ example: '2026-11-28T10:15:30.123Z' });

export const WebhookSecret = z
  .object({
    object: z.literal('webhook_secret'),
    secret: z.string().openapi({
      description:
        'Verifies `webhook-signature` (Standard Webhooks): HMAC-SHA256 keyed by the base64-decoded part after `whsec_`.',
      example: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    }),
    previous_secret_expires_at: isoTime.nullable().openapi({
      description:
        'After a rotation, the previous secret still signs (a second signature) until this instant; null otherwise.',
    }),
  })
  .openapi('WebhookSecret', {
    example: {
      object: 'webhook_secret',
      secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwB0jNwE1FbYk=',
      previous_secret_expires_at: null,
    },
  });

/** The one example delivery; the list's example reuses it. */
const EXAMPLE_DELIVERY = {
  id: '5f0c9a7e-1b2d-4c3e-8f9a-0b1c2d3e4f5a',
  object: 'webhook_delivery' as const,
  webhook_id: 'evt_2b8f3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d',
  type: 'generation.completed' as const,
  url: 'https://example.com/hooks/easel',
  attempt: 1,
  status_code: 200,
  latency_ms: 84,
  outcome: 'delivered' as const,
  error: null,
  next_attempt_at: null,
  created_at: '2026-11-28T10:15:39.120Z',
};

export const WebhookDelivery = z
  .object({
    id: z.uuid().openapi({ example: '5f0c9a7e-1b2d-4c3e-8f9a-0b1c2d3e4f5a' }),
    object: z.literal('webhook_delivery'),
    webhook_id: z.string().openapi({
      description: 'The `webhook-id` sent: the same for every attempt of one event.',
      example: 'evt_2b8f3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d',
    }),
    type: z.enum(WEBHOOK_EVENT_TYPES).openapi({ example: 'generation.completed' }),
    url: z.string().openapi({ example: 'https://example.com/hooks/easel' }),
    attempt: z.int().min(1).openapi({ example: 1 }),
    status_code: z
      .int()
      .nullable()
      .openapi({ description: "The receiver's HTTP status; null when no response came.", example: 200 }),
    latency_ms: z.int().min(0).openapi({ example: 84 }),
    outcome: z.enum(WEBHOOK_DELIVERY_OUTCOMES).openapi({
      description:
        'What became of the attempt: `delivered` (2xx); `retry` (network error, timeout, 408, 429, 5xx; ' +
        'another attempt follows at `next_attempt_at`); `exhausted` (the same, with no attempt left: the ' +
        'retry schedule is used up, or it was a redelivery); `gone` (410: the URL is now disabled for the ' +
        'key); `rejected` (another status: final); `forbidden` (the address is refused: nothing sent); ' +
        '`skipped_disabled` (the URL is disabled for the key after a 410: nothing sent; see ' +
        '`GET /v1/webhooks/disabled-urls`).',
      example: 'delivered',
    }),
    error: z
      .string()
      .nullable()
      .openapi({
        description:
          'Why the attempt failed (timeout, connection error, HTTP status, forbidden address) or was skipped ' +
          '(the URL is disabled, and how to re-enable it); null on success.',
        example: null,
      }),
    next_attempt_at: isoTime
      .nullable()
      .openapi({ description: 'When the next attempt is due; null when none follows.' }),
    created_at: isoTime,
  })
  .openapi('WebhookDelivery', { example: EXAMPLE_DELIVERY });

export const WebhookDeliveryList = z
  .object({
    object: z.literal('list'),
    data: z.array(WebhookDelivery).openapi({ description: 'Oldest first.' }),
  })
  .openapi('WebhookDeliveryList', {
    example: {
      object: 'list',
      data: [EXAMPLE_DELIVERY],
    },
  });

export const WebhookDeliveryIdParams = z.object({
  id: z.uuid().openapi({
    param: { name: 'id', in: 'path', description: 'A delivery id from the delivery log.' },
    example: '5f0c9a7e-1b2d-4c3e-8f9a-0b1c2d3e4f5a',
  }),
});

export const WebhookRedelivery = z
  .object({
    object: z.literal('webhook_redelivery'),
    webhook_id: z.string().openapi({ example: 'evt_2b8f3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d' }),
    attempt: z
      .int()
      .min(1)
      .openapi({ description: 'The attempt number the redelivery will have.', example: 4 }),
  })
  .openapi('WebhookRedelivery', {
    example: {
      object: 'webhook_redelivery',
      webhook_id: 'evt_2b8f3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d',
      attempt: 2,
    },
  });

const DISABLED_URL_EXAMPLE = {
  id: '7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f',
  object: 'disabled_webhook_url',
  url: 'https://example.com/hooks/easel',
  disabled_at: '2026-11-28T10:15:39.120Z',
  webhook_id: 'evt_2b8f3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d',
} as const;

export const DisabledWebhookUrl = z
  .object({
    id: z.uuid().openapi({ example: DISABLED_URL_EXAMPLE.id }),
    object: z.literal('disabled_webhook_url'),
    url: z.string().openapi({
      description: 'Exactly as given in `webhook_url`; another spelling of it is another URL.',
      example: DISABLED_URL_EXAMPLE.url,
    }),
    disabled_at: isoTime.openapi({ description: 'When the receiver answered 410 Gone.' }),
    webhook_id: z.string().nullable().openapi({
      description: 'The event whose attempt got the 410; null once that event is deleted.',
      example: DISABLED_URL_EXAMPLE.webhook_id,
    }),
  })
  .openapi('DisabledWebhookUrl', {
    description:
      "A URL the calling key's receiver retired with 410 Gone. Nothing is sent to it, for any of the " +
      "key's generations, until it is re-enabled: each event is logged as `skipped_disabled` instead.",
    example: DISABLED_URL_EXAMPLE,
  });

export const DisabledWebhookUrlList = z
  .object({
    object: z.literal('list'),
    data: z.array(DisabledWebhookUrl).openapi({ description: 'Oldest first.' }),
  })
  .openapi('DisabledWebhookUrlList', { example: { object: 'list', data: [DISABLED_URL_EXAMPLE] } });

export const DisabledWebhookUrlIdParams = z.object({
  id: z.uuid().openapi({
    param: { name: 'id', in: 'path', description: 'An id from `GET /v1/webhooks/disabled-urls`.' },
    example: DISABLED_URL_EXAMPLE.id,
  }),
});
