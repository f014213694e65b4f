import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ProblemDocument } from './errors.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;

before(async () => {
  api = await startTestApi('api_limits', { MAX_IN_FLIGHT_PER_KEY: '3' });
});
after(async () => {
  await api?.close();
});

function create(url: string, key: string, prompt: string) {
  return call(`${url}/v1/generations`, { key, json: { prompt } });
}

async function setStatus(apiKeyId: string, from: string, to: 'running' | 'succeeded' | 'canceled') {
  await api.t.db
    .updateTable('generations')
    .set({ status: to })
    .where('api_key_id', '=', apiKeyId)
    .where('status', '=', from as 'queued')
    .execute();
}

async function expectProblem(res: Response, status: number, code: string, retryAfter: string) {
  assert.equal(res.status, status);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  assert.equal(res.headers.get('retry-after'), retryAfter);
  const problem = (await res.json()) as ProblemDocument;
  assert.equal(problem.code, code);
  assert.equal(problem.status, status);
  assert.equal(problem.type, `urn:easel:problem:${code}`);
  return problem;
}

test('config defaults: 50 in flight per key, 10000 queued', async () => {
  const { loadApiConfig } = await import('./config.ts');
  const config = loadApiConfig({ DATABASE_URL: 'postgres://localhost/easel' });
  assert.equal(config.MAX_IN_FLIGHT_PER_KEY, 50);
  assert.equal(config.MAX_QUEUED, 10_000);
  assert.throws(
    () => loadApiConfig({ DATABASE_URL: 'postgres://localhost/easel', MAX_QUEUED: '0' }),
    /MAX_QUEUED/,
  );
});

test('a key with max_in_flight=2 and 2 queued gets 429 too_many_in_flight with Retry-After', async () => {
  const limited = await api.newKey('limited');
  await api.t.db.updateTable('api_keys').set({ max_in_flight: 2 }).where('id', '=', limited.id).execute();
  assert.equal((await create(api.url, limited.key, 'one')).status, 202);
  assert.equal((await create(api.url, limited.key, 'two')).status, 202);

  const refused = await create(api.url, limited.key, 'three');
  const problem = await expectProblem(refused, 429, 'too_many_in_flight', '10');
  assert.match(problem.detail, /2 generations/);
  const rows = await api.t.db
    .selectFrom('generations')
    .select('prompt')
    .where('api_key_id', '=', limited.id)
    .execute();
  assert.equal(rows.length, 2, 'nothing was stored for the refused request');

  // Running ones count too; finished ones do not.
  await setStatus(limited.id, 'queued', 'running');
  assert.equal((await create(api.url, limited.key, 'still three')).status, 429);
  await setStatus(limited.id, 'running', 'succeeded');
  assert.equal((await create(api.url, limited.key, 'three again')).status, 202);

  // Another key is not affected by this one's cap.
  const other = await api.newKey('other');
  assert.equal((await create(api.url, other.key, 'unaffected')).status, 202);
});

test('a key without max_in_flight uses MAX_IN_FLIGHT_PER_KEY', async () => {
  const plain = await api.newKey('plain');
  for (const prompt of ['a', 'b', 'c']) assert.equal((await create(api.url, plain.key, prompt)).status, 202);
  await expectProblem(await create(api.url, plain.key, 'd'), 429, 'too_many_in_flight', '10');
});

test('reaching MAX_QUEUED across all keys gives 503 queue_full with Retry-After', async () => {
  await api.t.db
    .updateTable('generations')
    .set({ status: 'canceled' })
    .where('status', '=', 'queued')
    .execute();
  const variant = await api.serveVariant({ config: { ...api.config, MAX_QUEUED: 3 } });
  const a = await api.newKey('queue a');
  const b = await api.newKey('queue b');
  assert.equal((await create(variant.url, a.key, 'q1')).status, 202);
  assert.equal((await create(variant.url, b.key, 'q2')).status, 202);
  // A running generation is not queued: it does not count towards MAX_QUEUED.
  await setStatus(b.id, 'queued', 'running');
  assert.equal((await create(variant.url, b.key, 'q3')).status, 202);
  assert.equal((await create(variant.url, a.key, 'q4')).status, 202);

  await expectProblem(await create(variant.url, a.key, 'q5'), 503, 'queue_full', '30');
  const fresh = await api.newKey('queue c');
  await expectProblem(await create(variant.url, fresh.key, 'q6'), 503, 'queue_full', '30');

  await setStatus(a.id, 'queued', 'succeeded');
  assert.equal((await create(variant.url, fresh.key, 'q7')).status, 202);
});
