import { createRoute } from '@hono/zod-openapi';
import { EXAMPLE_GENERATION_ID } from '../shared/generation.schemas.ts';
import { STREAMS_RETRY_AFTER_SECONDS } from './errors.ts';
import { EventStreamHeaders, EXAMPLE_GENERATION_EVENT, GenerationEvent } from './events.schemas.ts';
import { GenerationIdParams } from './generations.schemas.ts';
import {
  internalErrorResponse,
  problemResponse,
  retryAfterHeader,
  unauthorizedResponse,
  unavailableResponse,
} from './responses.ts';

const security = [{ bearerAuth: [] }];
const ALL = '/v1/events';
const ONE = `/v1/generations/${EXAMPLE_GENERATION_ID}/events`;

/** What both operations share: the wire format, authentication, the resume guarantee. */
const STREAM_DESCRIPTION =
  'A `text/event-stream` (server-sent events). Each event has an `id:`, an `event:` (its type) and one ' +
  '`data:` line holding a `GenerationEvent` as JSON; lines starting with `:` are keep-alives (every ' +
  '15 s), and the stream starts with a `retry:` line (milliseconds to wait before reconnecting).\n\n' +
  '**Authentication** is the `Authorization: Bearer` header, as everywhere under /v1; keys are never ' +
  "accepted in the query string. Browsers' `EventSource` cannot send that header: read the stream with " +
  '`fetch()` and its body reader (or any fetch-based SSE client) instead.\n\n' +
  "**Events** are states, not deltas: each carries the whole generation as it is then. The worker's " +
  'progress steps come at most about four a second; a state that is replaced before it can be sent ' +
  '(two steps between reads) is skipped, never a final one.\n\n' +
  '**Reconnecting**: send the last `id` received (on an event, or on a bare `id:` line) as ' +
  '`Last-Event-ID`. Ids are resume points in the database clock, valid on any API process (opaque; ' +
  'several events may share one). A resumed stream opens with the current state of every generation ' +
  'it covers that may have changed meanwhile, so no status change is lost: what the client missed is ' +
  'collapsed into that current state (the steps of a generation that also finished meanwhile arrive ' +
  'as its one final event). After its final event a generation is not sent again on that connection. ' +
  'Streams end when the API shuts down (a `:` comment says so): reconnect with `Last-Event-ID`; a ' +
  'client that reads too slowly to keep up is disconnected the same way.\n\n' +
  'Open streams count against the API key: at most MAX_STREAMS_PER_KEY per API process (429 ' +
  '`too_many_streams`).';

const streamResponse = (description: string) => ({
  description,
  headers: {
    'Cache-Control': {
      description: 'Events are live: never cached.',
      schema: { type: 'string', example: 'no-store' },
    },
  } as const,
  content: {
    'text/event-stream': {
      // OpenAPI 3.1 cannot type an event stream's items; this is the JSON of each `data:` line.
      schema: GenerationEvent,
      example: EXAMPLE_GENERATION_EVENT,
    },
  },
});

const tooManyStreams = (instance: string) => ({
  ...problemResponse(
    'The API key already has MAX_STREAMS_PER_KEY event streams open on this API process.',
    instance,
    {
      code: 'too_many_streams',
      detail: 'This API key already has 20 event streams open on this server, its limit; close one first.',
    },
  ),
  headers: { 'Retry-After': retryAfterHeader(STREAMS_RETRY_AFTER_SECONDS) },
});

export const streamEventsRoute = createRoute({
  method: 'get',
  path: '/v1/events',
  operationId: 'streamEvents',
  tags: ['Generations'],
  summary: "Stream status changes of all the calling key's generations",
  description:
    'An event each time any generation of the calling API key changes: created (`generation.queued`), ' +
    'moved up the queue, started, progressed, and finished (`generation.succeeded`, `generation.failed`, ' +
    '`generation.canceled`). It opens with the current state of every queued or running generation of ' +
    'the key, then a bare `id:` line; with `Last-Event-ID`, it also sends the final event of every ' +
    'generation that finished since that id (at most the last 1000; after a longer absence list ' +
    '`GET /v1/generations`). The stream stays open until the client closes it.' +
    `\n\n${STREAM_DESCRIPTION}`,
  security,
  request: { headers: EventStreamHeaders },
  responses: {
    200: streamResponse("The stream of the key's events."),
    401: unauthorizedResponse(ALL),
    429: tooManyStreams(ALL),
    500: internalErrorResponse(ALL),
    503: unavailableResponse(
      ALL,
      'The database is unreachable, or this API process is shutting down; retry later.',
    ),
  },
});

export const streamGenerationEventsRoute = createRoute({
  method: 'get',
  path: '/v1/generations/{id}/events',
  operationId: 'streamGenerationEvents',
  tags: ['Generations'],
  summary: "Stream a generation's status changes until it finishes",
  description:
    'Opens with the generation as it is now (`generation.queued`, `generation.started` or a final ' +
    'event), then an event for each change: queue position, start, progress steps, and the final ' +
    'status (`generation.succeeded` with its `outputs`, `generation.failed` or `generation.canceled`), ' +
    'after which the stream ends. For a generation that has already finished it sends the final event ' +
    'and ends at once; a client must not reconnect after a final event. Reconnecting (with or without ' +
    '`Last-Event-ID`) always starts with the current state.' +
    `\n\n${STREAM_DESCRIPTION}`,
  security,
  request: { params: GenerationIdParams, headers: EventStreamHeaders },
  responses: {
    200: streamResponse("The generation's events; the stream ends after its final one."),
    401: unauthorizedResponse(ONE),
    404: problemResponse(
      'No generation with this id belongs to the calling key (or the id is not a UUID).',
      ONE,
      { code: 'not_found', detail: 'No generation with this id.' },
    ),
    429: tooManyStreams(ONE),
    500: internalErrorResponse(ONE),
    503: unavailableResponse(
      ONE,
      'The database is unreachable, or this API process is shutting down; retry later.',
    ),
  },
});
