// POST /v1/generations/{id}/cancel against the in-process app (no worker): the worker's side is
// played by the repository functions it calls; test/cancel-progress.test.ts runs the real one.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import {
  GENERATION_CANCEL_CHANNEL,
  GENERATION_STATUS_CHANNEL,
  markCanceled,
  markRunning,
  recordProgress,
} from '../db/generations.repository.ts';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import { createStatusListener, type StatusListener } from './status-listener.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;
let alice: { id: string; key: string };
let listener: StatusListener;
let url: string;
/** LISTENs on both channels, recording `channel:payload`. */
let probe: pg.Client;
const heard: string[] = [];

before(async () => {
  api = await startTestApi('api_cancel');
  alice = await api.newKey('alice');
  listener = createStatusListener({ connectionString: api.t.url, logger: pino({ level: 'silent' }) });
  assert.equal(await listener.start(), true);
  ({ url } = await api.serveVariant({ statusListener: listener }));
  probe = new pg.Client({ connectionString: api.t.url });
  await probe.connect();
  probe.on('notification', (m) => heard.push(`${m.channel}:${m.payload}`));
  await probe.query(`LISTEN ${GENERATION_STATUS_CHANNEL}`);
  await probe.query(`LISTEN ${GENERATION_CANCEL_CHANNEL}`);
});
after(async () => {
  await listener?.close();
  await probe?.end();
  await api?.close();
});

async function create(): Promise<string> {
  const res = await call(`${url}/v1/generations`, { key: alice.key, json: { prompt: 'to cancel' } });
  assert.equal(res.status, 202);
  return ((await res.json()) as GenerationResource).id;
}

const cancel = (id: string, headers: Record<string, string> = {}) =>
  call(`${url}/v1/generations/${id}/cancel`, { method: 'POST', key: alice.key, headers });

/** Resolves when the probe has heard `channel:payload`. */
async function hear(channel: string, payload: string) {
  const entry = `${channel}:${payload}`;
  while (!heard.includes(entry)) await once(probe, 'notification');
}

test('canceling a queued generation notifies status waiters and cancels its job in the same commit', async () => {
  const id = await create();
  const res = await cancel(id);
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as GenerationResource).status, 'canceled');
  await hear(GENERATION_STATUS_CHANNEL, id);
  const { rows } = await sql<{ state: string }>`select state from pgboss.job where id = ${id}`.execute(
    api.t.db,
  );
  assert.deepEqual(rows, [{ state: 'cancelled' }]);
  assert.equal(
    await markRunning(api.t.db, id, 'w1'),
    undefined,
    'a worker that fetched it anyway may not run it',
  );
});

test('canceling a running generation answers 202, tells the workers, and shows in progress writes', async () => {
  const id = await create();
  assert.ok(await markRunning(api.t.db, id, 'w1'));
  assert.deepEqual(await recordProgress(api.t.db, id, { step: 5, total: 25, stepMs: 40 }), {
    cancelRequested: false,
  });

  const res = await cancel(id);
  assert.equal(res.status, 202);
  const body = (await res.json()) as GenerationResource;
  assert.equal(body.status, 'running');
  assert.equal(body.cancel_requested, true);
  assert.deepEqual(body.progress, { step: 5, total: 25 });
  assert.equal(typeof body.eta, 'string');
  await hear(GENERATION_CANCEL_CHANNEL, id);
  assert.deepEqual(await recordProgress(api.t.db, id, { step: 6, total: 25, stepMs: 40 }), {
    cancelRequested: true,
  });

  // Repeating is harmless: still pending, still 202.
  assert.equal((await cancel(id)).status, 202);
});

test('with Prefer: wait, the cancel of a running generation answers 200 once the worker has stopped it', async () => {
  const id = await create();
  assert.ok(await markRunning(api.t.db, id, 'w1'));
  const waiting = once(listener.events, 'waiting');
  const pending = cancel(id, { Prefer: 'wait=30' });
  await waiting;
  assert.ok(await markCanceled(api.t.db, id));
  const res = await pending;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('preference-applied'), 'wait=30');
  const body = (await res.json()) as GenerationResource;
  assert.equal(body.status, 'canceled');
  assert.equal(body.eta, null);
  assert.equal((await cancel(id)).status, 200, 'canceled already: 200');
});

test('a claim refuses a generation whose cancel was requested; markCanceled ends it', async () => {
  const id = await create();
  assert.ok(await markRunning(api.t.db, id, 'w1'));
  assert.equal((await cancel(id)).status, 202);
  // The worker died; the retry's claim must not run it.
  assert.equal(await markRunning(api.t.db, id, 'w2'), undefined);
  const row = await markCanceled(api.t.db, id);
  assert.equal(row?.status, 'canceled');
  assert.equal(row?.attempts, 1);
});
