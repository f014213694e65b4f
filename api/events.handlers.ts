// Server-sent event streams over the event hub (event-hub.ts). A stream subscribes first, then
// reads the current state, and writes that state before any live event that arrived meanwhile;
// a snapshot older than what the stream already sent of a generation, or showing nothing new, is
// dropped. Event ids are resume points in the database's clock: the newest change (`updated_at`)
// the stream has sent, or the moment it read its opening state, whichever is later. A resume
// sends again every generation finished since a little before that point (RESUME_SLACK_MS), so
// a change committed late (a transaction stamped before an event already sent) is not missed.
import type { RouteHandler } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { Logger } from 'pino';
import { type GenerationStatus, TERMINAL_STATUSES } from '../db/types.ts';
import type { AppEnv } from './context.ts';
import { apiError } from './errors.ts';
import { type EventHub, type GenerationSnapshot, isNewer, RESUME_SLACK_MS } from './event-hub.ts';
import type { streamEventsRoute, streamGenerationEventsRoute } from './events.routes.ts';
import type { GenerationEventType } from './events.schemas.ts';
import { bindGenerationId } from './middleware.ts';

/** Logged when a stream ends, with its `reason`, its `events` count and `duration_ms`. */
export const EVENT_STREAM_ENDED = 'event stream ended';
/** A `:` comment this often keeps proxies and clients from timing the stream out. */
export const KEEP_ALIVE_MS = 15_000;
/** The `retry:` the stream opens with: how long a client waits before reconnecting. */
export const RETRY_MS = 3_000;
/** A client this far behind is disconnected (it resumes with Last-Event-ID) rather than buffered for. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
/** Finished generations a long-lived stream remembers (to drop late snapshots of them) this long. */
const FINISHED_MEMORY_MS = 60_000;

export interface EventStreamDeps {
  /** Absent (tests, the OpenAPI export): the routes answer 503. */
  eventHub?: EventHub;
  keepAliveMs?: number;
}

interface Sent {
  status: GenerationStatus;
  attempts: number;
  updatedAtMs: number;
  readSeq: number;
  key: string;
  at: number;
}

const isTerminal = (status: GenerationStatus) => TERMINAL_STATUSES.includes(status);

/** The type of the event showing `status`, given what the stream last sent of the generation. */
export function eventTypeFor(
  snapshot: Pick<GenerationSnapshot, 'status' | 'attempts'>,
  last: Pick<Sent, 'status' | 'attempts'> | undefined,
): GenerationEventType {
  switch (snapshot.status) {
    case 'queued':
      return 'generation.queued';
    case 'running':
      return last?.status === 'running' && last.attempts === snapshot.attempts
        ? 'generation.progress'
        : 'generation.started';
    default:
      return `generation.${snapshot.status}`;
  }
}

/** A Last-Event-ID this API handed out (milliseconds of the database clock); anything else is ignored. */
export function parseEventId(header: string | undefined): number | undefined {
  const value = header?.trim();
  if (!value || !/^\d{1,15}$/.test(value)) return undefined;
  return Number(value);
}

interface EventStreamOptions {
  /** Set for a single generation's stream, which ends after the generation's final event. */
  generationId?: string;
  /** The client's resume point, if it sent one. */
  resumeFromMs?: number;
  release: () => void;
  signal: AbortSignal;
  logger: Logger;
  keepAliveMs: number;
}

function createEventStream(options: EventStreamOptions) {
  const encoder = new TextEncoder();
  const sent = new Map<string, Sent>();
  const early: GenerationSnapshot[] = [];
  const openedAt = performance.now();
  let watermark = options.resumeFromMs ?? 0;
  let opened = false;
  let ended = false;
  let events = 0;
  let unsubscribe: () => void = () => {};
  let keepAlive: NodeJS.Timeout | undefined;
  let controller!: ReadableStreamDefaultController<Uint8Array>;

  const body = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
      },
      cancel() {
        stop('client disconnected');
      },
    },
    { highWaterMark: 64 * 1024, size: (chunk) => chunk.byteLength },
  );

  function stop(reason: string) {
    if (ended) return;
    ended = true;
    clearInterval(keepAlive);
    unsubscribe();
    options.release();
    options.signal.removeEventListener('abort', onAbort);
    options.logger.info(
      { reason, events, duration_ms: Math.round(performance.now() - openedAt) },
      EVENT_STREAM_ENDED,
    );
  }

  /** Ends the response (after what is buffered), unless the client is gone already. */
  function end(reason: string, comment?: string) {
    if (ended) return;
    if (comment) controller.enqueue(encoder.encode(`: ${comment}\n\n`));
    stop(reason);
    controller.close();
  }

  function write(text: string) {
    if (ended) return;
    controller.enqueue(encoder.encode(text));
    if ((controller.desiredSize ?? 0) < -MAX_BUFFERED_BYTES) {
      end('client too slow', 'too far behind: reconnect with Last-Event-ID');
    }
  }

  const onAbort = () => stop('client disconnected');
  options.signal.addEventListener('abort', onAbort, { once: true });

  function forgetFinished() {
    const before = Date.now() - FINISHED_MEMORY_MS;
    for (const [id, entry] of sent) if (isTerminal(entry.status) && entry.at < before) sent.delete(id);
  }

  function send(snapshot: GenerationSnapshot) {
    if (ended) return;
    const last = sent.get(snapshot.id);
    if (last && (isTerminal(last.status) || !isNewer(snapshot, last) || snapshot.key === last.key)) return;
    const type = eventTypeFor(snapshot, last);
    sent.set(snapshot.id, {
      status: snapshot.status,
      attempts: snapshot.attempts,
      updatedAtMs: snapshot.updatedAtMs,
      readSeq: snapshot.readSeq,
      key: snapshot.key,
      at: Date.now(),
    });
    watermark = Math.max(watermark, snapshot.updatedAtMs);
    events++;
    // The resource is JSON.stringify output: one line, whatever its strings hold.
    write(`id: ${watermark}\nevent: ${type}\ndata: {"type":"${type}","generation":${snapshot.resource}}\n\n`);
    if (options.generationId !== undefined && isTerminal(snapshot.status)) end('generation finished');
    else if (events % 256 === 0) forgetFinished();
  }

  return {
    body,
    attach(unsubscribeFromHub: () => void) {
      unsubscribe = unsubscribeFromHub;
    },
    /** A live snapshot: held until the opening state is written, so ids never skip past it. */
    deliver(snapshot: GenerationSnapshot) {
      if (!opened) early.push(snapshot);
      else send(snapshot);
    },
    /**
     * Writes the opening state, then the resume point it covers (`readAtMs`: the database clock
     * before it was read), then what arrived live meanwhile; starts the keep-alives.
     */
    open(snapshots: readonly GenerationSnapshot[], readAtMs?: number) {
      write(`retry: ${RETRY_MS}\n\n`);
      for (const snapshot of snapshots) send(snapshot);
      if (readAtMs !== undefined && !ended) {
        // An id without data: moves the client's Last-Event-ID without an event (the SSE spec).
        watermark = Math.max(watermark, readAtMs);
        write(`id: ${watermark}\n\n`);
      }
      opened = true;
      for (const snapshot of early.splice(0)) send(snapshot);
      if (!ended) {
        keepAlive = setInterval(() => write(': keep-alive\n\n'), options.keepAliveMs);
        keepAlive.unref();
      }
    },
    /** The hub is closing: the API is shutting down. */
    shutdown() {
      end('server shutting down', 'the server is shutting down: reconnect with Last-Event-ID');
    },
    /** The request failed before the stream was handed out. */
    abandon(reason: string) {
      stop(reason);
    },
  };
}

const STREAM_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-store',
  // Ending the stream ends the connection: a server shutting down need not wait for it to idle out.
  Connection: 'close',
  // Proxies such as nginx must pass events on as they come, not buffer the response.
  'X-Accel-Buffering': 'no',
};

function hubOf(deps: EventStreamDeps): EventHub {
  if (!deps.eventHub)
    throw apiError('service_unavailable', 'Event streams are not available on this server.');
  return deps.eventHub;
}

/**
 * HEAD: the headers a GET would get, and no stream. Hono answers HEAD by running the GET handler
 * and dropping its body without cancelling it, which would leave a stream subscribed (and a slot
 * of the key's cap taken) for good.
 */
async function answerHead(c: Context<AppEnv>, deps: EventStreamDeps, generationId?: string) {
  const hub = hubOf(deps);
  if (generationId !== undefined && !(await hub.current(generationId, c.get('apiKey').id))) {
    throw apiError('not_found', 'No generation with this id.');
  }
  return c.body(null, 200, STREAM_HEADERS);
}

function streamFor(c: Context<AppEnv>, deps: EventStreamDeps, generationId?: string) {
  const hub = hubOf(deps);
  const apiKeyId = c.get('apiKey').id;
  const release = hub.admit(apiKeyId);
  const resumeFromMs = parseEventId(c.req.header('Last-Event-ID'));
  const stream = createEventStream({
    generationId,
    resumeFromMs: generationId === undefined ? resumeFromMs : undefined,
    release,
    signal: c.req.raw.signal,
    logger: c.get('logger'),
    keepAliveMs: deps.keepAliveMs ?? KEEP_ALIVE_MS,
  });
  stream.attach(hub.subscribe({ apiKeyId, generationId, deliver: stream.deliver, close: stream.shutdown }));
  return { hub, apiKeyId, resumeFromMs, stream };
}

export function streamEventsHandler(deps: EventStreamDeps): RouteHandler<typeof streamEventsRoute, AppEnv> {
  return async (c) => {
    if (c.req.method === 'HEAD') return answerHead(c, deps);
    const { hub, apiKeyId, resumeFromMs, stream } = streamFor(c, deps);
    try {
      const opening = await hub.currentOfKey(
        apiKeyId,
        resumeFromMs === undefined ? undefined : resumeFromMs - RESUME_SLACK_MS,
      );
      stream.open(opening.snapshots, opening.nowMs);
    } catch (error) {
      stream.abandon('failed to open');
      throw error;
    }
    return c.body(stream.body, 200, STREAM_HEADERS);
  };
}

export function streamGenerationEventsHandler(
  deps: EventStreamDeps,
): RouteHandler<typeof streamGenerationEventsRoute, AppEnv> {
  return async (c) => {
    const { id } = c.req.valid('param');
    bindGenerationId(c, id);
    if (c.req.method === 'HEAD') return answerHead(c, deps, id);
    const { hub, apiKeyId, stream } = streamFor(c, deps, id);
    try {
      const current = await hub.current(id, apiKeyId);
      if (!current) throw apiError('not_found', 'No generation with this id.');
      stream.open([current]);
    } catch (error) {
      stream.abandon('failed to open');
      throw error;
    }
    return c.body(stream.body, 200, STREAM_HEADERS);
  };
}
