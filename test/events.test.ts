// Server-sent events on the real stack: the API and a worker as processes, the events fed by
// Postgres LISTEN/NOTIFY. The streams are read with fetch() and a small SSE parser, as a browser
// page must (EventSource cannot send the Authorization header).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { EVENT_STREAM_ENDED } from '../api/events.handlers.ts';
import type { GenerationEventType } from '../api/events.schemas.ts';
import { createResponseValidator, loadOpenApiDocument } from '../api/openapi-conformance.ts';
import { createApiKey } from '../db/api-keys.repository.ts';
import { registerModel } from '../db/models.repository.ts';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import { GENERATION_STARTED, GENERATION_SUCCEEDED } from '../shared/log-events.ts';
import { DEMO_MODEL } from './harness/models.ts';
import { type Stack, startStack } from './harness/stack.ts';

/** About 2-4 s of denoising with the demo model: long enough to drop a connection mid-run. */
const LONG = { steps: 300, width: 2048, height: 2048 } as const;
const STREAM_CAP = 3;

let stack: Stack;

before(async () => {
  stack = await startStack('events', { WARMUP_SIZE: '64' });
  await stack.startApi({ MAX_STREAMS_PER_KEY: String(STREAM_CAP), MAX_PIXELS: String(2048 * 2048) });
  await stack.startWorker();
});

after(async () => {
  await stack?.stop();
});

interface SseMessage {
  id?: string;
  event?: string;
  data?: string;
  retry?: number;
  comments: string[];
}

/** The SSE wire format (WHATWG HTML §9.2), enough of it for these streams: one message per block. */
async function* sseMessages(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true }).replaceAll('\r\n', '\n');
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message: SseMessage = { comments: [] };
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          message.comments.push(line.slice(1).trim());
          continue;
        }
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const raw = colon < 0 ? '' : line.slice(colon + 1);
        const value = raw.startsWith(' ') ? raw.slice(1) : raw;
        if (field === 'data') message.data = message.data === undefined ? value : `${message.data}\n${value}`;
        else if (field === 'id') message.id = value;
        else if (field === 'event') message.event = value;
        else if (field === 'retry') message.retry = Number(value);
      }
      yield message;
    }
  }
}

interface Received {
  id: string | undefined;
  type: GenerationEventType;
  generation: GenerationResource;
}

interface EventStream {
  response: Response;
  /** The last id seen (an event's or an id-only block's): what a client resumes with. */
  lastId: string | undefined;
  retry: number | undefined;
  comments: string[];
  /** The next event; undefined once the server has ended the stream. */
  next(): Promise<Received | undefined>;
  /** The events until one matches (included); fails if the stream ends first. */
  until(predicate: (event: Received) => boolean): Promise<Received[]>;
  /** The events of the opening state (before the id-only block that ends it; /v1/events only). */
  opening(): Promise<Received[]>;
  /** Every event until the server ends the stream. */
  rest(): Promise<Received[]>;
  /** Drops the connection, as a client losing its network would. */
  close(): void;
}

async function openStream(
  path: string,
  key: string,
  options: { lastEventId?: string; base?: string } = {},
): Promise<EventStream> {
  const abort = new AbortController();
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (options.lastEventId !== undefined) headers['last-event-id'] = options.lastEventId;
  const response = await fetch(`${options.base ?? stack.baseUrl()}${path}`, {
    headers,
    signal: abort.signal,
  });
  const messages = response.ok && response.body ? sseMessages(response.body) : undefined;

  /** The next event, or 'mark' for an id-only block (the end of /v1/events' opening state). */
  async function read(): Promise<Received | 'mark' | undefined> {
    if (!messages) return undefined;
    for (;;) {
      const { value: message, done } = await messages.next();
      if (done) return undefined;
      if (message.id !== undefined) stream.lastId = message.id;
      if (message.retry !== undefined) stream.retry = message.retry;
      stream.comments.push(...message.comments);
      if (message.data === undefined) {
        if (message.id !== undefined) return 'mark';
        continue;
      }
      const body = JSON.parse(message.data) as { type: GenerationEventType; generation: GenerationResource };
      assert.equal(message.event, body.type, 'the SSE event name is the event type');
      return { id: message.id, type: body.type, generation: body.generation };
    }
  }

  const stream: EventStream = {
    response,
    lastId: undefined,
    retry: undefined,
    comments: [],
    async next() {
      for (;;) {
        const item = await read();
        if (item !== 'mark') return item;
      }
    },
    async until(predicate) {
      const events: Received[] = [];
      for (;;) {
        const event = await stream.next();
        assert.ok(event, `the stream ended before the awaited event; got ${describe(events)}`);
        events.push(event);
        if (predicate(event)) return events;
      }
    },
    async opening() {
      const events: Received[] = [];
      for (;;) {
        const item = await read();
        if (item === 'mark') return events;
        assert.ok(item, `the stream ended during its opening state; got ${describe(events)}`);
        events.push(item);
      }
    },
    async rest() {
      const events: Received[] = [];
      for (let event = await stream.next(); event; event = await stream.next()) events.push(event);
      return events;
    },
    close() {
      abort.abort();
    },
  };
  return stream;
}

const describe = (events: Received[]) =>
  events
    .map(
      (e) =>
        `${e.generation.id.slice(0, 8)}:${e.type}(${e.generation.queue_position ?? ''}/${e.generation.progress?.step ?? ''})`,
    )
    .join(', ') || 'nothing';

const byId = (id: string) => (line: Record<string, unknown>) => line.generation_id === id;
const worker = () => {
  const w = stack.workers[0];
  assert.ok(w, 'a worker runs');
  return w;
};

async function newKey(name: string) {
  const { apiKey, key } = await createApiKey(stack.database.db, { name });
  return { id: apiKey.id, key };
}

async function create(key: string, body: Record<string, unknown>): Promise<string> {
  const res = await stack.request('/v1/generations', {
    method: 'POST',
    headers: { authorization: `Bearer ${key}` },
    body: JSON.stringify({ prompt: 'an event stream test', ...body }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return ((await res.json()) as GenerationResource).id;
}

const ofGeneration = (id: string) => (event: Received) => event.generation.id === id;
const finished = (id: string) => (event: Received) =>
  event.generation.id === id && ['succeeded', 'failed', 'canceled'].includes(event.generation.status);

test('one generation: queued as its position moves, started, progress, succeeded with outputs; then the stream ends', {
  timeout: 90_000,
}, async (t) => {
  const owner = await newKey('events-order');
  // A generation of another key holds the worker, so the ones below stay queued for a while.
  const blocker = await stack.enqueue(LONG);
  await worker().waitForLog(GENERATION_STARTED, byId(blocker), { past: true });
  const all = await openStream('/v1/events', owner.key);
  assert.equal(all.response.status, 200);
  assert.equal(all.response.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  assert.equal(all.response.headers.get('cache-control'), 'no-store');
  assert.deepEqual(await all.opening(), [], 'nothing in flight yet');

  const ahead = await create(owner.key, { steps: 150, width: 2048, height: 2048 });
  const id = await create(owner.key, { steps: 150, width: 2048, height: 2048 });
  const one = await openStream(`/v1/generations/${id}/events`, owner.key);
  assert.equal(one.response.status, 200);
  const events = await one.rest();
  assert.equal(one.retry, 3000, 'the stream opens with a retry: line');

  t.diagnostic(`events: ${describe(events)}`);
  const types = events.map((e) => e.type);
  assert.ok(
    events.every((e) => e.generation.id === id),
    'only this generation',
  );
  assert.deepEqual(
    events.filter((e) => e.type === 'generation.queued').map((e) => e.generation.queue_position),
    [1, 0],
    `positions as the queue moves: ${describe(events)}`,
  );
  const started = types.indexOf('generation.started');
  assert.ok(started > 0 && types.slice(0, started).every((t) => t === 'generation.queued'), types.join());
  const progress = events.filter((e) => e.type === 'generation.progress');
  assert.ok(progress.length >= 1, `progress events: ${describe(events)}`);
  assert.deepEqual(
    types.slice(started + 1, -1),
    progress.map(() => 'generation.progress'),
    'started, then only progress, then the end',
  );
  const steps = progress.map((e) => e.generation.progress?.step ?? 0);
  assert.deepEqual(
    steps,
    [...steps].sort((a, b) => a - b),
    'progress never goes back',
  );
  const last = events.at(-1);
  assert.equal(last?.type, 'generation.succeeded');
  assert.equal(last?.generation.status, 'succeeded');
  assert.equal(last?.generation.outputs.length, 1);
  const output = last?.generation.outputs[0];
  assert.ok(output && new URL(output.url).pathname.endsWith('/0.jpg'), 'a presigned output URL');
  const image = await fetch(output.url);
  assert.equal(image.status, 200, 'the URL is presigned and works');
  assert.equal(image.headers.get('content-type'), 'image/jpeg');
  const ids = events.map((e) => Number(e.id));
  assert.ok(
    ids.every((n, i) => Number.isSafeInteger(n) && (i === 0 || n >= (ids[i - 1] as number))),
    `ids ${ids}`,
  );

  // The key's stream saw the same story for both of its generations, from their creation.
  const seen = await all.until(finished(id));
  const mine = seen.filter(ofGeneration(id)).map((e) => e.type);
  assert.equal(mine[0], 'generation.queued', 'new generations appear on /v1/events as they are created');
  assert.equal(mine.at(-1), 'generation.succeeded');
  assert.ok(mine.includes('generation.started'), mine.join());
  assert.ok(seen.some(finished(ahead)), `the other generation of the key: ${describe(seen)}`);
  assert.ok(!seen.some(ofGeneration(blocker)), "another key's generation never shows");
  all.close();
});

test('an already finished generation: its final event with fresh output URLs, then the end', {
  timeout: 60_000,
}, async () => {
  const owner = await newKey('events-finished');
  const id = await create(owner.key, { steps: 2, width: 64, height: 64 });
  await worker().waitForLog(GENERATION_SUCCEEDED, byId(id), { past: true });
  const stream = await openStream(`/v1/generations/${id}/events`, owner.key);
  const events = await stream.rest();
  assert.deepEqual(
    events.map((e) => e.type),
    ['generation.succeeded'],
  );
  const url = events[0]?.generation.outputs[0]?.url;
  assert.ok(url);
  assert.equal((await fetch(url)).status, 200);

  // Reconnecting after the final event (a client should not) gets the same answer, not a hang.
  const again = await openStream(`/v1/generations/${id}/events`, owner.key, { lastEventId: stream.lastId });
  assert.deepEqual(
    (await again.rest()).map((e) => e.type),
    ['generation.succeeded'],
  );

  const stranger = await newKey('events-stranger');
  const foreign = await openStream(`/v1/generations/${id}/events`, stranger.key);
  assert.equal(foreign.response.status, 404, "another key's generation does not exist for it");
  assert.equal(foreign.response.headers.get('content-type'), 'application/problem+json');
  assert.equal(((await foreign.response.json()) as { code: string }).code, 'not_found');
  const anonymous = await fetch(`${stack.baseUrl()}/v1/events`);
  assert.equal(anonymous.status, 401);
  const inQuery = await fetch(`${stack.baseUrl()}/v1/events?api_key=${owner.key}`);
  assert.equal(inQuery.status, 401, 'keys are never taken from the query string');
});

test('Last-Event-ID: a client that drops mid-run gets what it missed on reconnecting', {
  timeout: 90_000,
}, async () => {
  const owner = await newKey('events-resume');
  const all = await openStream('/v1/events', owner.key);
  await all.opening();
  const id = await stack.enqueue({ ...LONG, api_key_id: owner.id });
  const one = await openStream(`/v1/generations/${id}/events`, owner.key);
  await one.until((e) => e.type === 'generation.progress');
  await all.until((e) => e.generation.id === id && e.type === 'generation.progress');
  const resumeAll = all.lastId;
  const resumeOne = one.lastId;
  assert.ok(resumeAll && resumeOne);
  one.close();
  all.close();

  await worker().waitForLog(GENERATION_SUCCEEDED, byId(id), { past: true });
  const again = await openStream(`/v1/generations/${id}/events`, owner.key, { lastEventId: resumeOne });
  assert.deepEqual(
    (await again.rest()).map((e) => [e.type, e.generation.outputs.length]),
    [['generation.succeeded', 1]],
    'the single-generation stream resumes with the current (final) state and ends',
  );
  const resumed = await openStream('/v1/events', owner.key, { lastEventId: resumeAll });
  const missed = await resumed.opening();
  assert.deepEqual(
    missed.filter(ofGeneration(id)).map((e) => e.type),
    ['generation.succeeded'],
    `the key's stream resumes with the change it missed: ${describe(missed)}`,
  );
  resumed.close();

  // Without Last-Event-ID a stream starts from now: finished generations are not replayed.
  const fresh = await openStream('/v1/events', owner.key);
  assert.deepEqual(await fresh.opening(), []);
  fresh.close();
});

test('no events of another key on /v1/events', { timeout: 60_000 }, async () => {
  const alice = await newKey('events-alice');
  const bob = await newKey('events-bob');
  const aliceStream = await openStream('/v1/events', alice.key);
  const bobStream = await openStream('/v1/events', bob.key);
  await Promise.all([aliceStream.opening(), bobStream.opening()]);

  const alices = await create(alice.key, { steps: 2, width: 64, height: 64 });
  const aliceEvents = await aliceStream.until(finished(alices));
  assert.ok(aliceEvents.every(ofGeneration(alices)), describe(aliceEvents));
  // The hub hands out events in the order it reads them: once Bob's own generation shows on his
  // stream, any event of Alice's that could have reached him would have come before.
  const bobs = await create(bob.key, { steps: 2, width: 64, height: 64 });
  const bobEvents = await bobStream.until(finished(bobs));
  assert.ok(bobEvents.every(ofGeneration(bobs)), `Bob saw only his own: ${describe(bobEvents)}`);
  aliceStream.close();
  bobStream.close();
});

test('a key may hold MAX_STREAMS_PER_KEY streams open; one more is 429 too_many_streams', {
  timeout: 60_000,
}, async () => {
  const owner = await newKey('events-cap');
  const id = await create(owner.key, { steps: 2, width: 64, height: 64 });
  await worker().waitForLog(GENERATION_SUCCEEDED, byId(id), { past: true });
  // HEAD answers the headers and opens no stream: it takes no slot.
  for (let i = 0; i <= STREAM_CAP; i++) {
    const head = await fetch(`${stack.baseUrl()}/v1/events`, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${owner.key}` },
    });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  }
  const open: EventStream[] = [];
  for (let i = 0; i < STREAM_CAP; i++) {
    const stream = await openStream('/v1/events', owner.key);
    assert.equal(stream.response.status, 200);
    open.push(stream);
  }
  for (const path of ['/v1/events', `/v1/generations/${id}/events`]) {
    const refused = await openStream(path, owner.key);
    assert.equal(refused.response.status, 429, path);
    assert.equal(refused.response.headers.get('content-type'), 'application/problem+json');
    assert.equal(refused.response.headers.get('retry-after'), '15');
    assert.equal(((await refused.response.json()) as { code: string }).code, 'too_many_streams');
  }
  const other = await newKey('events-cap-other');
  const unaffected = await openStream('/v1/events', other.key);
  assert.equal(unaffected.response.status, 200, 'the cap is per key');
  unaffected.close();

  // A closed stream frees its slot once the server has seen the connection go.
  const api = stack.api;
  assert.ok(api);
  const freed = api.waitForLog(
    EVENT_STREAM_ENDED,
    (line) => line.api_key_id === owner.id && line.reason === 'client disconnected',
  );
  open.pop()?.close();
  await freed;
  const next = await openStream(`/v1/generations/${id}/events`, owner.key);
  assert.equal(next.response.status, 200);
  assert.deepEqual(
    (await next.rest()).map((e) => e.type),
    ['generation.succeeded'],
  );
  for (const stream of open) stream.close();
});

test('an API restart ends the streams cleanly; reconnecting to the new process with Last-Event-ID gets the final state', {
  timeout: 120_000,
}, async () => {
  const owner = await newKey('events-restart');
  const id = await stack.enqueue({ ...LONG, api_key_id: owner.id });
  const all = await openStream('/v1/events', owner.key);
  const one = await openStream(`/v1/generations/${id}/events`, owner.key);
  await all.until((e) => e.generation.id === id && e.generation.status === 'running');
  await one.until((e) => e.generation.status === 'running');

  const old = stack.api;
  assert.ok(old);
  const stopping = old.stop();
  // Both streams end (rather than fail) when the API shuts down, with a comment saying why.
  await Promise.all([all.rest(), one.rest()]);
  assert.equal(await stopping, 0, 'the API stopped cleanly');
  for (const stream of [all, one]) {
    assert.ok(
      stream.comments.some((c) => c.includes('shutting down')),
      `shutdown comment: ${stream.comments.join(' | ')}`,
    );
  }
  const resumeAll = all.lastId;
  assert.ok(resumeAll);

  await worker().waitForLog(GENERATION_SUCCEEDED, byId(id), { past: true });
  await stack.startApi({ MAX_STREAMS_PER_KEY: String(STREAM_CAP), MAX_PIXELS: String(2048 * 2048) });
  const resumed = await openStream('/v1/events', owner.key, { lastEventId: resumeAll });
  const missed = await resumed.opening();
  const final = missed.filter(ofGeneration(id));
  assert.deepEqual(
    final.map((e) => e.type),
    ['generation.succeeded'],
    describe(missed),
  );
  assert.equal((await fetch(final[0]?.generation.outputs[0]?.url ?? '')).status, 200);
  resumed.close();
  const again = await openStream(`/v1/generations/${id}/events`, owner.key, { lastEventId: one.lastId });
  assert.deepEqual(
    (await again.rest()).map((e) => e.type),
    ['generation.succeeded'],
  );
});

test('openapi.yaml documents the streams: 200 text/event-stream and 429 conform; the body is not parsed', () => {
  const check = createResponseValidator(loadOpenApiDocument());
  const stream = new Headers({
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
  });
  const body = 'retry: 3000\n\nid: 1\n\n';
  for (const path of ['/v1/events', '/v1/generations/0b6f8f2e-5c1e-4d3a-9a57-3f1f2d8c9e10/events']) {
    assert.deepEqual(check({ method: 'GET', path, status: 200, headers: stream, body }), [], path);
    const problem = {
      type: 'urn:easel:problem:too_many_streams',
      title: 'Too many open event streams for this API key',
      status: 429,
      detail: 'This API key already has 3 event streams open on this server, its limit; close one first.',
      code: 'too_many_streams',
      instance: path,
      request_id: 'r',
    };
    const headers = new Headers({ 'content-type': 'application/problem+json', 'retry-after': '15' });
    assert.deepEqual(
      check({ method: 'GET', path, status: 429, headers, body: JSON.stringify(problem) }),
      [],
      path,
    );
  }
});

// Last in the file: it registers a second model, after which a create must name its model.
test("fair turns: another key's new job landing ahead moves a followed queued generation back", {
  timeout: 60_000,
}, async () => {
  // A model no worker holds: its jobs stay queued, so only creates move the positions.
  await registerModel(stack.database.db, { ...DEMO_MODEL, id: 'parked' });
  const alice = await newKey('events-fair-alice');
  const bob = await newKey('events-fair-bob');
  const parked = { model: 'parked', steps: 2, width: 64, height: 64 };
  const first = await create(alice.key, parked);
  const second = await create(alice.key, parked);
  const stream = await openStream(`/v1/generations/${second}/events`, alice.key);
  const [opening] = await stream.until((event) => event.type === 'generation.queued');
  assert.equal(opening?.generation.queue_position, 1);
  // Bob's first job takes its turn right after Alice's head, ahead of her second.
  const bobs = await create(bob.key, parked);
  const moved = await stream.until((event) => event.generation.queue_position === 2);
  assert.equal(moved.at(-1)?.type, 'generation.queued');
  stream.close();
  for (const [id, key] of [
    [first, alice.key],
    [second, alice.key],
    [bobs, bob.key],
  ] as const) {
    const res = await stack.request(`/v1/generations/${id}/cancel`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}` },
    });
    assert.equal(res.status, 200);
  }
});
