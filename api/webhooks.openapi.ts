// The receiver's side of webhooks in the OpenAPI 3.1 document (its top-level `webhooks`): one
// entry per event type, with the signed headers, the body and what each answer makes Easel do,
// so an SDK generator can type a receiver. Documentation only: nothing here handles a request.
import { type OpenAPIHono, z } from '@hono/zod-openapi';
import { WEBHOOK_EVENT_TYPES, type WebhookEventType } from '../db/types.ts';
import { Generation } from './generations.schemas.ts';

const EVENT_ID = 'evt_2b8f3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d';

/** Per event type: its component name, the generation status it reports, and when it is sent. */
const EVENTS: Record<WebhookEventType, { name: string; status: string; when: string }> = {
  'generation.started': {
    name: 'GenerationStartedEvent',
    status: 'running',
    when: 'A worker started running the generation (a retried attempt starts again: each start is its own event).',
  },
  'generation.completed': {
    name: 'GenerationCompletedEvent',
    status: 'succeeded',
    when: 'The generation succeeded: `data.outputs` holds its images, with output URLs presigned when the attempt was made.',
  },
  'generation.failed': {
    name: 'GenerationFailedEvent',
    status: 'failed',
    when: 'The generation failed for good: `data.error` says why.',
  },
  'generation.canceled': {
    name: 'GenerationCanceledEvent',
    status: 'canceled',
    when: 'The generation was canceled (while queued, or stopped between denoising steps).',
  },
};

/** The Standard Webhooks headers: [header, description, example]. */
const HEADERS = [
  [
    'webhook-id',
    'The event id, the same on every retry and redelivery of one event: drop the duplicates by it.',
    EVENT_ID,
  ],
  [
    'webhook-timestamp',
    'Unix seconds when this attempt was signed; reject ones too far from your clock.',
    '1795861539',
  ],
  [
    'webhook-signature',
    'Space-separated `v1,<base64 HMAC-SHA256>` signatures of `<webhook-id>.<webhook-timestamp>.<raw body>`, ' +
      'keyed by the base64-decoded part after `whsec_` of the secret from `GET /v1/webhooks/secret` ' +
      '(Standard Webhooks). Right after a rotation there are two, one per valid secret. Verify the raw ' +
      'body, before parsing it.',
    'v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=',
  ],
] as const;

function eventSchema(type: WebhookEventType) {
  const { name, status } = EVENTS[type];
  return z
    .object({
      type: z.literal(type),
      timestamp: z.iso.datetime().openapi({
        description:
          'When the status change happened (the same on every attempt; `webhook-timestamp` is the attempt).',
        example: '2026-11-28T10:15:39.120Z',
      }),
      data: Generation,
    })
    .openapi(name, {
      description:
        `The \`${type}\` event. \`data\` is the generation as it was at the status change (\`status\` ` +
        `\`${status}\`), in the shape \`GET /v1/generations/{id}\` returns.`,
    });
}

const eventSchemas = WEBHOOK_EVENT_TYPES.map(eventSchema) as [
  ReturnType<typeof eventSchema>,
  ...ReturnType<typeof eventSchema>[],
];

/** Any event, told apart by `type`: what one receiver URL gets. */
export const WebhookEvent = z.discriminatedUnion('type', eventSchemas).openapi('WebhookEvent', {
  description:
    'Any webhook event; `type` says which. All the events of one generation go to its `webhook_url`.',
});

const headers = z.object(
  Object.fromEntries(
    HEADERS.map(([name, description, example]) => [
      name,
      z.string().openapi({ param: { name, in: 'header', description }, example }),
    ]),
  ),
);

/** What Easel does with each answer; shared by every event type (components/responses). */
const RESPONSES = {
  '2XX': [
    'WebhookReceived',
    'Received. Answer within the timeout (10 s by default); do slow work afterwards.',
  ],
  '410': [
    'WebhookGone',
    "Gone: the URL is retired. Easel disables it for the API key: no later event of any of the key's " +
      'generations is sent to it (each is logged as `skipped_disabled`) until the key re-enables it ' +
      '(`DELETE /v1/webhooks/disabled-urls/{id}`).',
  ],
  '429': [
    'WebhookTooManyRequests',
    'Retried on the schedule, no sooner than its `Retry-After` (seconds or an HTTP date) says.',
  ],
  '5XX': [
    'WebhookServerError',
    'Retried on the schedule, as are 408, timeouts and network errors; a 503 `Retry-After` is honoured.',
  ],
  default: [
    'WebhookRejected',
    'Any other status (3xx: redirects are not followed; other 4xx): final, not retried.',
  ],
} as const;

/** Adds the `webhooks` section: one entry per event type. */
export function registerWebhookEvents(registry: OpenAPIHono['openAPIRegistry']): void {
  registry.register('WebhookEvent', WebhookEvent);
  const responses = Object.fromEntries(
    Object.entries(RESPONSES).map(([status, [name, description]]) => [
      status,
      registry.registerComponent('responses', name, { description }).ref,
    ]),
  );
  WEBHOOK_EVENT_TYPES.forEach((type, i) => {
    const { when } = EVENTS[type];
    registry.registerWebhook({
      method: 'post',
      path: type,
      operationId: `${type.replace(/\.(\w)/, (_, c: string) => c.toUpperCase())}Webhook`,
      tags: ['Webhooks'],
      // Easel calls the receiver: no API key; the signature headers authenticate the request.
      security: [],
      summary: `${type}`,
      description:
        `${when} POSTed to the generation's \`webhook_url\` when its \`webhook_events\` include \`${type}\` ` +
        `(${type === 'generation.started' ? 'only when asked for' : 'as by default'}), signed per Standard ` +
        'Webhooks, retried with backoff until a final answer. Every attempt is listed at ' +
        '`GET /v1/generations/{id}/webhook-deliveries`.',
      request: {
        headers,
        body: {
          required: true,
          content: { 'application/json': { schema: eventSchemas[i] as ReturnType<typeof eventSchema> } },
        },
      },
      responses,
    });
  });
}
