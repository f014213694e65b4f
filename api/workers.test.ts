// GET /v1/workers on the real app over HTTP: rows written the way workers write them
// (db/workers.repository.ts), liveness judged by WORKER_STALE_SECONDS, admin keys only.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createApiKey, revokeApiKey } from '../db/api-keys.repository.ts';
import { heartbeatWorker, markWorkerStopped, registerWorker } from '../db/workers.repository.ts';
import { call, startTestApi, type TestApi } from './testing.ts';
import type { WorkerResource } from './workers.schemas.ts';

let api: TestApi;
let admin: { id: string; key: string };
let user: { id: string; key: string };
const running = randomUUID();

before(async () => {
  api = await startTestApi('api_workers');
  const created = await createApiKey(api.t.db, { name: 'operator', admin: true });
  admin = { id: created.apiKey.id, key: created.key };
  user = await api.newKey('integrator');

  await registerWorker(api.t.db, {
    id: 'gpu-a',
    modelId: 'demo',
    hostname: 'box-a',
    pid: 101,
    provider: 'cuda',
    model: { dir: '/models/sd15', kind: 'stable-diffusion-1' },
    translator: { dir: '/models/ru-en' },
  });
  await heartbeatWorker(api.t.db, 'gpu-a', { currentGenerationId: running, jobsSucceeded: 7, jobsFailed: 1 });
  await registerWorker(api.t.db, {
    id: 'gpu-silent',
    modelId: 'demo',
    hostname: 'box-b',
    pid: 202,
    provider: 'cpu',
    model: { dir: '/models/demo' },
    translator: null,
  });
  // Crashed five minutes ago: it simply stopped heartbeating.
  await api.t.db
    .updateTable('workers')
    .set({
      last_heartbeat_at: new Date(Date.now() - 300_000),
      started_at: new Date(Date.now() - 600_000),
    })
    .where('id', '=', 'gpu-silent')
    .execute();
  await registerWorker(api.t.db, {
    id: 'gpu-stopped',
    modelId: 'demo',
    hostname: 'box-c',
    pid: 303,
    provider: 'cpu',
    model: { dir: '/models/demo' },
    translator: null,
  });
  await markWorkerStopped(api.t.db, 'gpu-stopped');
});
after(async () => {
  await api?.close();
});

async function listWorkers(url: string, key: string, query = '') {
  const res = await call(`${url}/v1/workers${query}`, { key });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await res.json()) as { object: string; data: WorkerResource[] };
  assert.equal(body.object, 'list');
  return body.data;
}

test('an admin key sees the live workers with what they serve and run', async () => {
  const data = await listWorkers(api.url, admin.key);
  assert.deepEqual(
    data.map((w) => w.id),
    ['gpu-a'],
  );
  const [worker] = data;
  assert.ok(worker);
  const row = await api.t.db
    .selectFrom('workers')
    .selectAll()
    .where('id', '=', 'gpu-a')
    .executeTakeFirstOrThrow();
  assert.deepEqual(worker, {
    id: 'gpu-a',
    object: 'worker',
    hostname: 'box-a',
    pid: 101,
    provider: 'cuda',
    model: { dir: '/models/sd15', kind: 'stable-diffusion-1' },
    translator: { dir: '/models/ru-en' },
    current_generation_id: running,
    jobs_succeeded: 7,
    jobs_failed: 1,
    started_at: row.started_at.toISOString(),
    last_heartbeat_at: row.last_heartbeat_at.toISOString(),
    stopped_at: null,
    live: true,
  });
});

test('include_stale=true adds the silent and the stopped worker, marked not live', async () => {
  const data = await listWorkers(api.url, admin.key, '?include_stale=true');
  assert.deepEqual(data.map((w) => w.id).sort(), ['gpu-a', 'gpu-silent', 'gpu-stopped']);
  const byId = new Map(data.map((w) => [w.id, w]));
  assert.equal(byId.get('gpu-a')?.live, true);
  assert.equal(byId.get('gpu-silent')?.live, false);
  assert.equal(byId.get('gpu-silent')?.stopped_at, null);
  assert.equal(byId.get('gpu-silent')?.translator, null);
  assert.equal(byId.get('gpu-stopped')?.live, false);
  assert.match(byId.get('gpu-stopped')?.stopped_at ?? '', /^\d{4}-\d\d-\d\dT/);
  assert.equal(byId.get('gpu-stopped')?.current_generation_id, null);
  // Most recent heartbeat first: the one silent for five minutes is last.
  assert.equal(data.at(-1)?.id, 'gpu-silent');

  assert.deepEqual(
    (await listWorkers(api.url, admin.key, '?include_stale=false')).map((w) => w.id),
    ['gpu-a'],
  );
});

test('WORKER_STALE_SECONDS decides what counts as live', async () => {
  // Ten minutes of grace: the worker silent for five is live again; a stopped one never is.
  const lenient = await api.serveVariant({ config: { ...api.config, WORKER_STALE_SECONDS: 600 } });
  assert.deepEqual((await listWorkers(lenient.url, admin.key)).map((w) => w.id).sort(), [
    'gpu-a',
    'gpu-silent',
  ]);
  assert.equal(api.config.WORKER_STALE_SECONDS, 30, 'the default');
});

test('a heartbeat brings a silent worker back', async () => {
  await heartbeatWorker(api.t.db, 'gpu-silent', {
    currentGenerationId: null,
    jobsSucceeded: 0,
    jobsFailed: 0,
  });
  assert.deepEqual((await listWorkers(api.url, admin.key)).map((w) => w.id).sort(), ['gpu-a', 'gpu-silent']);
});

test('a key that is not an admin key gets 403 forbidden; no key or a revoked one gets 401', async () => {
  const refused = await call(`${api.url}/v1/workers`, {
    key: user.key,
    headers: { 'X-Request-Id': 'not-admin' },
  });
  assert.equal(refused.status, 403);
  assert.equal(refused.headers.get('content-type'), 'application/problem+json');
  assert.deepEqual(await refused.json(), {
    type: 'urn:easel:problem:forbidden',
    title: 'The API key is not allowed to do this',
    status: 403,
    detail: 'This endpoint needs an admin API key (easel keys create --admin).',
    code: 'forbidden',
    instance: '/v1/workers',
    request_id: 'not-admin',
  });

  const anonymous = await call(`${api.url}/v1/workers`);
  assert.equal(anonymous.status, 401);
  assert.equal(((await anonymous.json()) as { code: string }).code, 'unauthorized');

  const { apiKey, key } = await createApiKey(api.t.db, { name: 'former operator', admin: true });
  assert.equal((await call(`${api.url}/v1/workers`, { key })).status, 200);
  await revokeApiKey(api.t.db, apiKey.id);
  assert.equal((await call(`${api.url}/v1/workers`, { key })).status, 401);
});

test('a bad include_stale is 422 validation_failed naming it', async () => {
  const res = await call(`${api.url}/v1/workers?include_stale=maybe`, { key: admin.key });
  assert.equal(res.status, 422);
  const problem = (await res.json()) as { code: string; errors: { field: string; message: string }[] };
  assert.equal(problem.code, 'validation_failed');
  assert.deepEqual(problem.errors, [{ field: 'include_stale', message: 'must be true or false' }]);
});

test('GET /v1/workers is documented under Operations with its 403', async () => {
  const doc = (await (await fetch(`${api.url}/openapi.json`)).json()) as {
    paths: Record<string, Record<string, { tags: string[]; responses: Record<string, unknown> }>>;
    tags: { name: string }[];
  };
  const operation = doc.paths['/v1/workers']?.get;
  assert.deepEqual(operation?.tags, ['Operations']);
  assert.deepEqual(Object.keys(operation?.responses ?? {}).sort(), [
    '200',
    '401',
    '403',
    '422',
    '500',
    '503',
  ]);
  assert.ok(doc.tags.some((t) => t.name === 'Operations'));
});
