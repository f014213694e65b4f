import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { markFailed, markRunning, markSucceeded } from '../db/generations.repository.ts';
import type { Database } from '../db/types.ts';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import { createStatusListener, type StatusListener } from './status-listener.ts';
import { preferredWaitSeconds } from './sync-wait.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

const LISTENER_APP = 'easel-listener-under-test';

let api: TestApi;
let alice: { id: string; key: string };
let listener: StatusListener;
let url: string;
/** A separate connection for inspecting the server, so it never shows up in what it inspects. */
let probe: pg.Client;

before(async () => {
  api = await startTestApi('api_sync_wait');
  alice = await api.newKey('alice');
  listener = createStatusListener({
    connectionString: api.t.url,
    logger: pino({ level: 'silent' }),
    applicationName: LISTENER_APP,
  });
  assert.equal(await listener.start(), true);
  ({ url } = await api.serveVariant({ statusListener: listener }));
  probe = new pg.Client({ connectionString: api.t.url, application_name: 'easel-test-probe' });
  await probe.connect();
});
after(async () => {
  await listener?.close();
  await probe?.end();
  await api?.close();
});

function createWaiting(prefer: string, json: unknown = { prompt: 'wait for me' }, base = url) {
  return call(`${base}/v1/generations`, { key: alice.key, json, headers: { Prefer: prefer } });
}

/** Resolves with the ids of the next `count` requests that start waiting on the listener. */
function nextWaiting(count = 1, on: StatusListener = listener): Promise<string[]> {
  return new Promise((resolve) => {
    const ids: string[] = [];
    const onWaiting = (id: string) => {
      ids.push(id);
      if (ids.length < count) return;
      on.events.off('waiting', onWaiting);
      resolve(ids);
    };
    on.events.on('waiting', onWaiting);
  });
}

async function succeed(id: string) {
  assert.ok(await markRunning(api.t.db, id), 'the row was committed before the request waited');
  const done = await markSucceeded(api.t.db, id, {
    promptEn: 'wait for me',
    negativePromptEn: '',
    outputs: [],
    timings: { denoise_ms: 1 },
    scheduler: 'ddim',
    promptTruncated: false,
    translated: false,
  });
  assert.ok(done);
}

test('Prefer parsing: wait=N among other preferences, clamped to 60; anything else is no wait', () => {
  assert.equal(preferredWaitSeconds('wait=5'), 5);
  assert.equal(preferredWaitSeconds('respond-async, WAIT = 10'), 10);
  assert.equal(preferredWaitSeconds('handling=lenient, wait="7"; foo=bar'), 7);
  assert.equal(preferredWaitSeconds('wait=600'), 60);
  assert.equal(preferredWaitSeconds('wait=99999999999999999999'), 60);
  for (const value of [
    undefined,
    '',
    'wait=0',
    'wait=-1',
    'wait=1.5',
    'wait',
    'wait=soon',
    'respond-async',
  ]) {
    assert.equal(preferredWaitSeconds(value), undefined, String(value));
  }
});

test('a generation completed while the request waits answers 200 with the finished resource', async () => {
  const waiting = nextWaiting();
  const pending = createWaiting('wait=30');
  const [id] = await waiting;
  await succeed(id as string);
  const res = await pending;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('preference-applied'), 'wait=30');
  assert.equal(res.headers.get('location'), `/v1/generations/${id}`);
  const body = (await res.json()) as GenerationResource;
  assert.equal(body.id, id);
  assert.equal(body.status, 'succeeded');
});

test('a failure ends the wait too, and waits over 60 s are clamped to 60', async () => {
  const waiting = nextWaiting();
  const pending = createWaiting('wait=3600');
  const [id] = await waiting;
  assert.ok(await markFailed(api.t.db, id as string, { code: 'model_missing', message: 'no unet' }));
  const res = await pending;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('preference-applied'), 'wait=60');
  const body = (await res.json()) as GenerationResource;
  assert.equal(body.status, 'failed');
  assert.equal(body.error?.code, 'model_missing');
});

test('with no completion, wait=1 answers 202 when the second has passed', async () => {
  const res = await createWaiting('wait=1');
  assert.equal(res.status, 202);
  assert.equal(((await res.json()) as GenerationResource).status, 'queued');
});

test('an idempotent replay of a finished generation with Prefer: wait answers 200 at once', async () => {
  const headers = { 'Idempotency-Key': 'wait-replay' };
  const json = { prompt: 'replay then wait' };
  const first = await call(`${url}/v1/generations`, { key: alice.key, json, headers });
  assert.equal(first.status, 202);
  const { id } = (await first.json()) as GenerationResource;
  await succeed(id);
  const replay = await call(`${url}/v1/generations`, {
    key: alice.key,
    json,
    headers: { ...headers, Prefer: 'wait=30' },
  });
  assert.equal(replay.status, 200);
  assert.equal(replay.headers.get('idempotent-replayed'), 'true');
  assert.equal(((await replay.json()) as GenerationResource).id, id);
});

test('without a status listener Prefer: wait is ignored', async () => {
  const res = await createWaiting('wait=30', { prompt: 'no listener' }, api.url);
  assert.equal(res.status, 202);
  assert.equal(res.headers.get('preference-applied'), null);
});

async function busyBackends(): Promise<Array<{ application_name: string; state: string; query: string }>> {
  const { rows } = await probe.query(
    `select application_name, state, query from pg_stat_activity
     where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'
       and state is distinct from 'idle'`,
  );
  return rows;
}

test('waiting requests hold no database connection: 5 concurrent waits leave the pool and Postgres idle', async () => {
  // The app under test gets its own pool here, so its in-use count can be read directly.
  const pool = new pg.Pool({ connectionString: api.t.url, max: 5, application_name: 'easel-wait-pool' });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const variant = await api.serveVariant({ db, statusListener: listener });
  try {
    const inUse = () => pool.totalCount - pool.idleCount;
    assert.deepEqual(await busyBackends(), [], 'nothing busy before');

    const waiting = nextWaiting(5);
    const pending = Array.from({ length: 5 }, (_, i) =>
      createWaiting('wait=30', { prompt: `concurrent wait ${i}` }, variant.url),
    );
    const ids = await waiting;

    // Were each wait holding a connection, all 5 of the pool's would be in use now.
    assert.equal(inUse(), 0, 'pool connections in use while 5 requests wait');
    assert.equal(pool.waitingCount, 0);
    assert.deepEqual(await busyBackends(), [], 'no backend active or idle in transaction');
    const read = await call(`${variant.url}/v1/generations/${ids[0]}`, { key: alice.key });
    assert.equal(read.status, 200, 'the API still reads while they wait');

    for (const id of ids) await succeed(id);
    const responses = await Promise.all(pending);
    assert.deepEqual(
      responses.map((r) => r.status),
      [200, 200, 200, 200, 200],
    );
  } finally {
    await db.destroy();
  }
});

test('the listener reconnects after its connection is killed, and waits work again', async () => {
  const lost = once(listener.events, 'disconnected');
  const back = once(listener.events, 'connected');
  const { rows } = await probe.query(
    `select pg_terminate_backend(pid) as killed from pg_stat_activity
     where datname = current_database() and application_name = $1`,
    [LISTENER_APP],
  );
  assert.deepEqual(rows, [{ killed: true }]);
  await lost;
  assert.equal(listener.connected, false);
  await back;
  assert.equal(listener.connected, true);

  const waiting = nextWaiting();
  const pending = createWaiting('wait=30', { prompt: 'after reconnect' });
  const [id] = await waiting;
  await succeed(id as string);
  assert.equal((await pending).status, 200);
});

test('a wait whose notification is lost while the listener is down falls back to its timeout', async () => {
  // Slow to reconnect, so the completion below happens while nobody listens.
  const slow = createStatusListener({
    connectionString: api.t.url,
    logger: pino({ level: 'silent' }),
    applicationName: 'easel-slow-listener',
    minReconnectDelayMs: 60_000,
  });
  assert.equal(await slow.start(), true);
  const variant = await api.serveVariant({ statusListener: slow });
  try {
    const waiting = nextWaiting(1, slow);
    const pending = createWaiting('wait=2', { prompt: 'lost notification' }, variant.url);
    const [id] = await waiting;
    const lost = once(slow.events, 'disconnected');
    await probe.query(
      `select pg_terminate_backend(pid) from pg_stat_activity
       where datname = current_database() and application_name = 'easel-slow-listener'`,
    );
    await lost;
    await succeed(id as string);
    // No notification can arrive; at its deadline the request re-reads the row and finds it done.
    const res = await pending;
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as GenerationResource).status, 'succeeded');
  } finally {
    await slow.close();
  }
});

test('closing the listener releases waiting requests at once with 202', async () => {
  const closing = createStatusListener({
    connectionString: api.t.url,
    logger: pino({ level: 'silent' }),
    applicationName: 'easel-closing-listener',
  });
  assert.equal(await closing.start(), true);
  const variant = await api.serveVariant({ statusListener: closing });
  const waiting = nextWaiting(1, closing);
  const started = Date.now();
  const pending = createWaiting('wait=60', { prompt: 'released on shutdown' }, variant.url);
  await waiting;
  await closing.close();
  const res = await pending;
  assert.equal(res.status, 202);
  assert.ok(Date.now() - started < 30_000);
});
