// GET /metrics on the real app over HTTP, backed by this file's own database: request latency by
// route pattern, problems and creates counted as they happen, gauges read from Postgres at scrape
// time (and left out, not zeroed, when Postgres does not answer), and the optional bearer token.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import pg from 'pg';
import { createApiKey } from '../db/api-keys.repository.ts';
import { createDb } from '../db/connect.ts';
import { generationQueue } from '../db/queue.ts';
import { heartbeatWorker, markWorkerStopped, registerWorker } from '../db/workers.repository.ts';
import { ConfigError } from '../shared/env.ts';
import { METRICS_QUERY_FAILED } from '../shared/log-events.ts';
import { DEMO_MODEL_ID } from '../test/harness/models.ts';
import { loadApiConfig } from './config.ts';
import { METRICS_QUERY_TIMEOUT_MS } from './metrics.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

// The demo model's queue: every generation here runs on it.
const GENERATION_QUEUE = generationQueue(DEMO_MODEL_ID);

let api: TestApi;
let alice: { id: string; key: string };

before(async () => {
  api = await startTestApi('api_metrics');
  alice = await api.newKey('alice');
});
after(async () => {
  await api?.close();
});

/** `name{labels}` → value, for every sample line of a Prometheus text exposition. */
function samples(text: string): Map<string, number> {
  const map = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    map.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return map;
}

async function scrape(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}/metrics`, { headers });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  return { text, samples: samples(text) };
}

async function create(url: string, prompt: string, headers: Record<string, string> = {}) {
  const res = await call(`${url}/v1/generations`, { key: alice.key, json: { prompt }, headers });
  assert.ok(res.status === 202 || res.status === 200, `create answered ${res.status}`);
  return ((await res.json()) as { id: string }).id;
}

test('request latency is labelled by route pattern (never the raw path); problems and creates are counted', async () => {
  // A variant of its own: its counters start at zero whatever else this file does.
  const variant = await api.serveVariant({});
  const id = await create(variant.url, 'counted', { 'Idempotency-Key': 'metrics-1' });
  // A replay of the same create is not a second generation.
  await create(variant.url, 'counted', { 'Idempotency-Key': 'metrics-1' });
  assert.equal((await call(`${variant.url}/v1/generations/${id}`, { key: alice.key })).status, 200);
  assert.equal((await call(`${variant.url}/v1/generations/${id}`, { key: alice.key })).status, 200);
  assert.equal((await call(`${variant.url}/v1/generations/${randomUUID()}`, { key: alice.key })).status, 404);
  assert.equal((await call(`${variant.url}/v1/generations/${id}`)).status, 401);
  assert.equal((await fetch(`${variant.url}/no/such/${randomUUID()}`)).status, 404);

  const { text, samples: s } = await scrape(variant.url);
  const count = (method: string, route: string, status: number) =>
    s.get(
      `easel_http_request_duration_seconds_count{method="${method}",route="${route}",status="${status}"}`,
    );
  assert.equal(count('POST', '/v1/generations', 202), 2);
  assert.equal(count('GET', '/v1/generations/:id', 200), 2);
  assert.equal(count('GET', '/v1/generations/:id', 404), 1);
  // Refused by the auth middleware before the handler ran: still the route's pattern.
  assert.equal(count('GET', '/v1/generations/:id', 401), 1);
  assert.equal(count('GET', 'unmatched', 404), 1);
  assert.ok(
    s.has(
      'easel_http_request_duration_seconds_bucket{le="0.1",method="GET",route="/v1/generations/:id",status="200"}',
    ),
    'histogram buckets',
  );
  assert.doesNotMatch(text, new RegExp(id), 'no generation id in any label');
  assert.doesNotMatch(text, /\/no\/such/, 'no unmatched path in any label');

  assert.equal(s.get('easel_generations_created_total'), 1);
  assert.equal(s.get('easel_http_problems_total{code="not_found"}'), 2);
  assert.equal(s.get('easel_http_problems_total{code="unauthorized"}'), 1);
  assert.equal(
    s.get('easel_http_problems_total{code="queue_full"}'),
    0,
    'every code is there from the start',
  );
  // The process's default metrics, on this app's own registry.
  assert.ok(s.has('process_cpu_user_seconds_total'));
  assert.ok(s.has('nodejs_eventloop_lag_seconds'));

  // The previous scrape is counted by the next one, under its route.
  const again = await scrape(variant.url);
  assert.equal(
    again.samples.get(
      'easel_http_request_duration_seconds_count{method="GET",route="/metrics",status="200"}',
    ),
    1,
  );
});

test('the generations, queue and worker gauges match the rows at scrape time', async () => {
  const queued = await create(api.url, 'stays queued');
  const fetched = await create(api.url, 'fetched by a worker');
  const succeeded = await create(api.url, 'succeeds');
  const canceled = await create(api.url, 'canceled');
  assert.equal(
    (await call(`${api.url}/v1/generations/${canceled}/cancel`, { method: 'POST', key: alice.key })).status,
    200,
  );
  await api.t.db
    .updateTable('generations')
    .set({ status: 'succeeded', started_at: new Date(), finished_at: new Date() })
    .where('id', '=', succeeded)
    .execute();
  await api.t.db
    .updateTable('generations')
    .set({ status: 'running', started_at: new Date() })
    .where('id', '=', fetched)
    .execute();
  // Played by the test: the first job in the queue (the oldest, `queued`) becomes active.
  const [job] = await api.boss.fetch(GENERATION_QUEUE);
  assert.ok(job);

  await registerWorker(api.t.db, {
    id: 'live-1',
    modelId: 'demo',
    hostname: 'box',
    pid: 1,
    provider: 'cpu',
    model: { dir: '/m' },
    translator: null,
  });
  await heartbeatWorker(api.t.db, 'live-1', {
    currentGenerationId: fetched,
    jobsSucceeded: 3,
    jobsFailed: 0,
  });
  for (const id of ['stale-1', 'stopped-1']) {
    await registerWorker(api.t.db, {
      id,
      modelId: 'demo',
      hostname: 'box',
      pid: 2,
      provider: 'cpu',
      model: {},
      translator: null,
    });
  }
  await api.t.db
    .updateTable('workers')
    .set({ last_heartbeat_at: new Date(Date.now() - 3_600_000) })
    .where('id', '=', 'stale-1')
    .execute();
  await markWorkerStopped(api.t.db, 'stopped-1');

  const rows = await api.t.db
    .selectFrom('generations')
    .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('status')
    .execute();
  const expected = new Map<string, number>(rows.map((r) => [r.status, Number(r.n)]));
  const { rows: jobRows } = await sql<{ state: string; n: number }>`
    select state, count(*)::int as n from pgboss.job where name = ${GENERATION_QUEUE} group by state`.execute(
    api.t.db,
  );
  const jobs = new Map(jobRows.map((r) => [r.state, r.n]));

  const { samples: s } = await scrape(api.url);
  for (const status of ['queued', 'running', 'succeeded', 'failed', 'canceled']) {
    assert.equal(s.get(`easel_generations{status="${status}"}`), expected.get(status) ?? 0, status);
  }
  assert.ok((expected.get('queued') ?? 0) >= 1, queued);
  assert.equal(s.get('easel_generations{status="running"}'), 1);
  assert.equal(s.get('easel_generations{status="succeeded"}'), 1);
  assert.equal(s.get('easel_generations{status="failed"}'), 0);
  assert.equal(s.get('easel_generations{status="canceled"}'), 1);
  for (const state of ['created', 'retry', 'active']) {
    assert.equal(s.get(`easel_queue_jobs{model="demo",state="${state}"}`), jobs.get(state) ?? 0, state);
  }
  // The one job the test fetched is active; the canceled one left the open states.
  assert.equal(s.get('easel_queue_jobs{model="demo",state="active"}'), 1);
  assert.equal(jobs.get('cancelled'), 1);
  assert.equal(s.has('easel_queue_jobs{model="demo",state="cancelled"}'), false);
  assert.equal(s.get('easel_workers_live'), 1);
  assert.equal(s.get('easel_metrics_scrape_errors_total{query="generations"}'), 0);
});

test('a database that does not answer: /metrics still answers promptly, without the gauges, and counts the errors', async () => {
  // Accepts connections and never speaks: every query waits until the deadline gives up on it.
  const sockets = new Set<Socket>();
  const silent: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const port = (silent.address() as { port: number }).port;
  const db = createDb(`postgres://postgres@127.0.0.1:${port}/none`, { connectionTimeoutMillis: 60_000 });
  const variant = await api.serveVariant({ db });
  try {
    const started = performance.now();
    const { text, samples: s } = await scrape(variant.url);
    const elapsed = performance.now() - started;
    assert.ok(elapsed < METRICS_QUERY_TIMEOUT_MS + 2000, `answered in ${Math.round(elapsed)} ms`);
    assert.doesNotMatch(text, /^easel_generations\{/m);
    assert.doesNotMatch(text, /^easel_queue_jobs\{/m);
    assert.doesNotMatch(text, /^easel_workers_live /m);
    for (const query of ['generations', 'queue_jobs', 'workers']) {
      assert.equal(s.get(`easel_metrics_scrape_errors_total{query="${query}"}`), 1, query);
    }
    assert.ok(s.has('process_cpu_user_seconds_total'), 'the rest of the scrape is there');
    const warned = api.logs.filter((l) => l.msg === METRICS_QUERY_FAILED);
    assert.deepEqual(warned.map((l) => l.query).sort(), ['generations', 'queue_jobs', 'workers']);
    assert.ok(warned.every((l) => typeof l.request_id === 'string'));
  } finally {
    for (const socket of sockets) socket.destroy();
    silent.close();
    await db.destroy();
  }
});

test('a count stuck behind a lock is cancelled by Postgres itself (statement_timeout); the other gauges stay', async () => {
  const locker = new pg.Client({ connectionString: api.t.url });
  await locker.connect();
  try {
    await locker.query('begin');
    await locker.query('lock table generations in access exclusive mode');
    const before = api.logs.length;
    const { text, samples: s } = await scrape(api.url);
    assert.doesNotMatch(text, /^easel_generations\{/m);
    assert.ok(s.has('easel_queue_jobs{model="demo",state="created"}'));
    assert.ok(s.has('easel_workers_live'));
    assert.equal(s.get('easel_metrics_scrape_errors_total{query="generations"}'), 1);
    const warned = api.logs.slice(before).find((l) => l.msg === METRICS_QUERY_FAILED);
    // 57014 query_canceled: the server stopped waiting too, so no count is left queued behind the lock.
    assert.equal((warned?.err as { code?: string } | undefined)?.code, '57014');
  } finally {
    await locker.query('rollback');
    await locker.end();
  }
  const { samples: s } = await scrape(api.url);
  assert.ok(s.has('easel_generations{status="queued"}'), 'back once the lock is gone');
});

test('METRICS_TOKEN: /metrics wants it as a bearer token; 401 problem+json otherwise', async () => {
  const token = 'metrics-token-0123456789';
  const variant = await api.serveVariant({ config: { ...api.config, METRICS_TOKEN: token } });
  for (const headers of [{}, { Authorization: 'Bearer wrong-token-0123456789' }, { Authorization: token }]) {
    const res = await fetch(`${variant.url}/metrics`, { headers });
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.equal(res.headers.get('www-authenticate'), 'Bearer');
    const problem = (await res.json()) as { code: string; instance: string };
    assert.equal(problem.code, 'unauthorized');
    assert.equal(problem.instance, '/metrics');
  }
  // An API key is not the metrics token.
  assert.equal(
    (await fetch(`${variant.url}/metrics`, { headers: { Authorization: `Bearer ${alice.key}` } })).status,
    401,
  );
  const { samples: s } = await scrape(variant.url, { Authorization: `Bearer ${token}` });
  assert.equal(s.get('easel_http_problems_total{code="unauthorized"}'), 4);

  // Without the token configured, the main app's /metrics is open.
  assert.equal((await fetch(`${api.url}/metrics`)).status, 200);
});

test('/metrics is an ops endpoint: not in the OpenAPI document; METRICS_TOKEN is validated at boot', async () => {
  const doc = (await (await fetch(`${api.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
  assert.equal(doc.paths['/metrics'], undefined);

  const env = { DATABASE_URL: api.t.url };
  assert.throws(
    () => loadApiConfig({ ...env, METRICS_TOKEN: 'short' }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /METRICS_TOKEN \('short'\): must be at least 16 characters/);
      return true;
    },
  );
  assert.equal(loadApiConfig(env).METRICS_TOKEN, undefined);
  assert.equal(loadApiConfig(env).WORKER_STALE_SECONDS, 30);
});

test('an admin key is only about /v1/workers: it does not open /metrics when a token is set', async () => {
  const { key } = await createApiKey(api.t.db, { name: 'ops', admin: true });
  const variant = await api.serveVariant({ config: { ...api.config, METRICS_TOKEN: 'x'.repeat(32) } });
  assert.equal(
    (await fetch(`${variant.url}/metrics`, { headers: { Authorization: `Bearer ${key}` } })).status,
    401,
  );
});
