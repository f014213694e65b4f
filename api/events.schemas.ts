// The event streams' shapes: one event per status change of a generation, each carrying the
// Generation resource as GET /v1/generations/{id} returns it at that moment.
import { z } from '@hono/zod-openapi';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import { EXAMPLE_GENERATION, Generation } from './generations.schemas.ts';

export const GENERATION_EVENT_TYPES = [
  'generation.queued',
  'generation.started',
  'generation.progress',
  'generation.succeeded',
  'generation.failed',
  'generation.canceled',
] as const;
export type GenerationEventType = (typeof GENERATION_EVENT_TYPES)[number];

/** Per event type: its component name, the status the generation has, and when it is sent. */
const EVENTS: Record<GenerationEventType, { name: string; status: string; when: string }> = {
  'generation.queued': {
    name: 'GenerationQueuedStreamEvent',
    status: 'queued',
    when:
      'The generation is waiting for a worker: first when the stream learns of it, then each time its ' +
      '`queue_position` changes (a generation ahead of it started or was canceled), and again if a failed ' +
      'attempt puts it back in the queue for a retry.',
  },
  'generation.started': {
    name: 'GenerationStartedStreamEvent',
    status: 'running',
    when:
      'A worker started running it (a retried attempt starts again: `attempts` counts them). Also the first ' +
      'event a stream sends for a generation that is running when the stream opens.',
  },
  'generation.progress': {
    name: 'GenerationProgressStreamEvent',
    status: 'running',
    when:
      'The running attempt reached another denoising step (`progress`), or its cancel was requested ' +
      '(`cancel_requested`). At most about four a second: as often as the worker records progress.',
  },
  'generation.succeeded': {
    name: 'GenerationSucceededStreamEvent',
    status: 'succeeded',
    when: 'It succeeded: `outputs` holds its images, with URLs presigned for this event (valid until `expires_at`).',
  },
  'generation.failed': {
    name: 'GenerationFailedStreamEvent',
    status: 'failed',
    when: 'It failed for good: `error` says why.',
  },
  'generation.canceled': {
    name: 'GenerationCanceledStreamEvent',
    status: 'canceled',
    when: 'It was canceled (while queued, or stopped between denoising steps).',
  },
};

function eventSchema(type: GenerationEventType) {
  const { name, status, when } = EVENTS[type];
  return z
    .object({
      type: z.literal(type),
      generation: Generation,
    })
    .openapi(name, {
      description: `\`${type}\`: ${when} \`generation.status\` is \`${status}\`.`,
    });
}

const eventSchemas = GENERATION_EVENT_TYPES.map(eventSchema) as [
  ReturnType<typeof eventSchema>,
  ...ReturnType<typeof eventSchema>[],
];

/** What one event's `data:` line holds: the event type, and the generation as it is now. */
export const GenerationEvent = z.discriminatedUnion('type', eventSchemas).openapi('GenerationEvent', {
  description:
    'The JSON in the `data:` line of one server-sent event; the SSE `event:` field repeats `type`. ' +
    '`generation` is the resource as `GET /v1/generations/{id}` returns it at that moment.',
});
export type GenerationEventBody = z.infer<typeof GenerationEvent>;

const running: GenerationResource = {
  ...EXAMPLE_GENERATION,
  status: 'running',
  prompt_en: EXAMPLE_GENERATION.prompt,
  negative_prompt_en: EXAMPLE_GENERATION.negative_prompt,
  queue_position: null,
  live_workers: null,
  progress: { step: 8, total: 25 },
  eta: '2026-11-28T10:15:38.120Z',
  attempts: 1,
  timings: { queued_ms: 17 },
  started_at: '2026-11-28T10:15:30.140Z',
};

export const EXAMPLE_GENERATION_EVENT: GenerationEventBody = {
  type: 'generation.progress',
  generation: running,
};

export const EventStreamHeaders = z.object({
  'Last-Event-ID': z
    .string()
    .optional()
    .openapi({
      param: {
        name: 'Last-Event-ID',
        in: 'header',
        description:
          'On reconnecting, the `id` of the last event (or `id:` line) received: the stream then starts ' +
          'with what changed since (see the operation). An id this API did not hand out is ignored.',
      },
      example: '1795861539120',
    }),
});
