import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import type { ProblemDocument } from './errors.ts';
import { requestHash } from './idempotency.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;
let alice: { id: string; key: string };
let bob: { id: string; key: string };

before(async () => {
  api = await startTestApi('api_idempotency');
  alice = await api.newKey('alice');
  bob = await api.newKey('bob');
});
after(async () => {
  await api?.close();
});

async function post(key: string, json: unknown, idempotencyKey?: string) {
  const res = await call(`${api.url}/v1/generations`, {
    key,
    json,
    headers: idempotencyKey === undefined ? {} : { 'Idempotency-Key': idempotencyKey },
  });
  return { res, body: (await res.json()) as Record<string, unknown> };
}

async function rowsOf(apiKeyId: string, prompt: string) {
  return api.t.db
    .selectFrom('generations')
    .select(['id', 'status'])
    .where('api_key_id', '=', apiKeyId)
    .where('prompt', '=', prompt)
    .execute();
}

async function jobCount(ids: string[]) {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from pgboss.job where id = any(${ids}::uuid[])`.execute(api.t.db);
  return rows[0]?.n ?? 0;
}

test('requestHash ignores field order and undefined members, and sees every value', () => {
  assert.equal(
    requestHash({ prompt: 'a', width: 512, seed: undefined, nested: { b: 1, a: [1, { y: 2, x: 1 }] } }),
    requestHash({ nested: { a: [1, { x: 1, y: 2 }], b: 1 }, width: 512, prompt: 'a' }),
  );
  assert.notEqual(requestHash({ prompt: 'a', width: 512 }), requestHash({ prompt: 'a', width: 520 }));
  assert.notEqual(requestHash({ a: [1, 2] }), requestHash({ a: [2, 1] }));
});

test('10 concurrent duplicates create exactly one generation and all answer 202 with its id', async () => {
  const json = { prompt: 'concurrent duplicates', steps: 10 };
  const responses = await Promise.all(
    Array.from({ length: 10 }, () => post(alice.key, json, 'retry-key-concurrent')),
  );
  for (const { res } of responses) assert.equal(res.status, 202);
  const ids = new Set(responses.map(({ body }) => body.id));
  assert.equal(ids.size, 1, `one id for all: ${[...ids].join(', ')}`);
  const [id] = ids as Set<string>;
  for (const { res } of responses) assert.equal(res.headers.get('location'), `/v1/generations/${id}`);
  // Exactly one request created it; the other nine were answered from the key.
  const replayed = responses.filter(({ res }) => res.headers.get('idempotent-replayed') === 'true');
  assert.equal(replayed.length, 9);

  const rows = await rowsOf(alice.id, json.prompt);
  assert.deepEqual(
    rows.map((r) => r.id),
    [id],
  );
  assert.equal(await jobCount([id as string]), 1);
});

test('a replay answers 202 with the generation as it is now, even after it finished', async () => {
  const json = { prompt: 'replayed later' };
  const first = await post(alice.key, json, 'retry-key-later');
  assert.equal(first.res.status, 202);
  assert.equal(first.res.headers.get('idempotent-replayed'), null);
  await api.t.db
    .updateTable('generations')
    .set({ status: 'failed', error_code: 'model_missing', error_message: 'no unet', finished_at: new Date() })
    .where('id', '=', first.body.id as string)
    .execute();

  // Same request spelled differently: explicit defaults, other field order.
  const again = await post(
    alice.key,
    { width: 512, negative_prompt: '', prompt: '  replayed later ', num_images: 1 },
    'retry-key-later',
  );
  assert.equal(again.res.status, 202);
  assert.equal(again.res.headers.get('idempotent-replayed'), 'true');
  assert.equal(again.body.id, first.body.id);
  assert.equal(again.body.seed, first.body.seed, 'the server-chosen seed is kept');
  assert.equal(again.body.status, 'failed');
  assert.deepEqual(again.body.error, { code: 'model_missing', message: 'no unet' });
  assert.equal((await rowsOf(alice.id, json.prompt)).length, 1);
});

test('the same key with a different body is 422 idempotency_key_reused and creates nothing', async () => {
  const first = await post(alice.key, { prompt: 'original body' }, 'retry-key-conflict');
  assert.equal(first.res.status, 202);
  for (const json of [{ prompt: 'another body' }, { prompt: 'original body', steps: 26 }]) {
    const { res, body } = await post(alice.key, json, 'retry-key-conflict');
    assert.equal(res.status, 422);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = body as unknown as ProblemDocument;
    assert.equal(problem.code, 'idempotency_key_reused');
    assert.equal(problem.status, 422);
    assert.deepEqual(
      problem.errors?.map((e) => e.field),
      ['Idempotency-Key'],
    );
  }
  assert.equal((await rowsOf(alice.id, 'another body')).length, 0);
  assert.equal((await rowsOf(alice.id, 'original body')).length, 1);
});

test('keys are scoped per API key: another key may use the same Idempotency-Key independently', async () => {
  const json = { prompt: 'shared idempotency key' };
  const [a, b] = await Promise.all([
    post(alice.key, json, 'retry-key-shared'),
    post(bob.key, json, 'retry-key-shared'),
  ]);
  assert.equal(a.res.status, 202);
  assert.equal(b.res.status, 202);
  assert.notEqual(a.body.id, b.body.id);
  // Bob may even use it with another body.
  const other = await post(bob.key, { prompt: 'bob, different body' }, 'retry-key-other');
  const alices = await post(alice.key, { prompt: 'alice, different body' }, 'retry-key-other');
  assert.equal(other.res.status, 202);
  assert.equal(alices.res.status, 202);
  assert.equal((await rowsOf(alice.id, json.prompt)).length, 1);
  assert.equal((await rowsOf(bob.id, json.prompt)).length, 1);
  // And a replay by each still finds its own.
  assert.equal((await post(bob.key, json, 'retry-key-shared')).body.id, b.body.id);
  assert.equal((await post(alice.key, json, 'retry-key-shared')).body.id, a.body.id);
});

test('a key older than 24 hours may be reused: it creates a new generation', async () => {
  const first = await post(alice.key, { prompt: 'yesterday' }, 'retry-key-expired');
  await api.t.db
    .updateTable('idempotency_keys')
    .set({ created_at: sql`now() - interval '24 hours 1 minute'` })
    .where('api_key_id', '=', alice.id)
    .where('key', '=', 'retry-key-expired')
    .execute();
  const reused = await post(alice.key, { prompt: 'today, other body' }, 'retry-key-expired');
  assert.equal(reused.res.status, 202);
  assert.notEqual(reused.body.id, first.body.id);
  assert.equal(reused.res.headers.get('idempotent-replayed'), null);
  // From now on the key answers with the new generation.
  const replay = await post(alice.key, { prompt: 'today, other body' }, 'retry-key-expired');
  assert.equal(replay.body.id, reused.body.id);
  const stale = await post(alice.key, { prompt: 'yesterday' }, 'retry-key-expired');
  assert.equal(stale.res.status, 422);
});

test('a request refused before it was stored (here: invalid) leaves its key unused', async () => {
  const bad = await post(alice.key, { prompt: 'x', width: 100 }, 'retry-key-after-error');
  assert.equal(bad.res.status, 422);
  assert.equal((bad.body as unknown as ProblemDocument).code, 'validation_failed');
  const good = await post(alice.key, { prompt: 'fixed body' }, 'retry-key-after-error');
  assert.equal(good.res.status, 202);
});

test('Idempotency-Key must be 1..255 characters', async () => {
  for (const value of ['', 'k'.repeat(256)]) {
    const { res, body } = await post(alice.key, { prompt: 'bad key' }, value);
    assert.equal(res.status, 422, `length ${value.length}`);
    const problem = body as unknown as ProblemDocument;
    assert.equal(problem.code, 'validation_failed');
    assert.deepEqual(
      problem.errors?.map((e) => e.field),
      ['Idempotency-Key'],
    );
  }
  const longest = await post(alice.key, { prompt: 'longest key' }, 'k'.repeat(255));
  assert.equal(longest.res.status, 202);
  assert.equal((await rowsOf(alice.id, 'bad key')).length, 0);
});
