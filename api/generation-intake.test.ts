// The batched create path against real Postgres and pg-boss: batches commit rows and jobs
// together, admission holds within a batch, and one bad row does not fail its batch-mates.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { PgBoss } from 'pg-boss';
import { createApiKey } from '../db/api-keys.repository.ts';
import { queuePosition } from '../db/generations.repository.ts';
import { countOpenGenerationJobs, createBoss, ensureGenerationQueue } from '../db/queue.ts';
import type { ApiKey } from '../db/types.ts';
import { createTestDatabase, type TestDatabase } from '../test/harness/database.ts';
import { ApiError } from './errors.ts';
import { createGenerationIntake, type IntakeRequest } from './generation-intake.ts';

let t: TestDatabase;
let boss: PgBoss;
const config = { MAX_IN_FLIGHT_PER_KEY: 1000, MAX_QUEUED: 10_000 };

before(async () => {
  t = await createTestDatabase('api_intake');
  boss = createBoss(t.url, { supervise: false, applicationName: 'easel-intake-test', max: 4 });
  await boss.start();
  await ensureGenerationQueue(boss, 'demo');
});
after(async () => {
  await boss?.stop({ graceful: false, close: true });
  await t?.drop();
});

async function newKey(name: string, maxInFlight: number | null = null): Promise<ApiKey> {
  const { apiKey } = await createApiKey(t.db, { name });
  if (maxInFlight === null) return apiKey;
  return t.db
    .updateTable('api_keys')
    .set({ max_in_flight: maxInFlight })
    .where('id', '=', apiKey.id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

function request(
  apiKey: ApiKey,
  prompt: string,
  ownerId = apiKey.id,
  idempotencyKey?: string,
): IntakeRequest {
  return {
    apiKey,
    idempotency: idempotencyKey ? { key: idempotencyKey, requestHash: `hash of ${prompt}` } : undefined,
    row: {
      id: randomUUID(),
      api_key_id: ownerId,
      model: 'demo',
      prompt,
      negative_prompt: '',
      width: 64,
      height: 64,
      steps: 2,
      guidance_scale: 7.5,
      num_images: 1,
      seed: 1,
      requested_scheduler: null,
      requested_karras: null,
      webhook_url: null,
      webhook_events: null,
    },
  };
}

async function clearQueue() {
  await t.db.deleteFrom('generations').execute();
  await boss.deleteAllJobs();
}

test('concurrent creates share transactions; every row has its job; positions match a read', async () => {
  await clearQueue();
  const key = await newKey('burst');
  // One batch at a time: concurrent batches do not see each other's rows, so their positions
  // can be off by the rows committing alongside (as a read at that instant would be).
  const intake = createGenerationIntake({ db: t.db, boss, config }, { concurrency: 1, maxBatch: 100 });
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => intake(request(key, `burst ${i}`))));

  const rows = await t.db.selectFrom('generations').select(['id', 'created_at']).execute();
  assert.equal(rows.length, 40);
  assert.equal(await countOpenGenerationJobs(t.db), 40, 'one job per row');
  // Rows of one transaction share created_at (now() is the transaction's start): the first
  // create ran alone, the 39 that arrived meanwhile in one more.
  assert.equal(new Set(rows.map((r) => r.created_at.getTime())).size, 2);

  const positions: number[] = [];
  for (const result of results) {
    assert.ok(result.ok && 'row' in result);
    assert.equal(result.position, await queuePosition(t.db, result.row), 'the position a read gives');
    positions.push(result.position);
  }
  assert.deepEqual(
    positions.toSorted((a, b) => a - b),
    Array.from({ length: 40 }, (_, i) => i),
  );
});

test('admission holds inside a batch: a key with max_in_flight 3 gets 3 of 10 and 429s for the rest', async () => {
  await clearQueue();
  const key = await newKey('capped', 3);
  // One batch at a time, so the count is exact (concurrent batches may overshoot by design).
  const intake = createGenerationIntake({ db: t.db, boss, config }, { concurrency: 1, maxBatch: 100 });
  const results = await Promise.all(
    Array.from({ length: 10 }, (_, i) => intake(request(key, `capped ${i}`))),
  );
  assert.equal(results.filter((r) => r.ok).length, 3);
  const refused = results.filter((r) => !r.ok).map((r) => (r.ok ? undefined : r.error));
  assert.equal(refused.length, 7);
  for (const error of refused) {
    assert.ok(error instanceof ApiError);
    assert.equal(error.code, 'too_many_in_flight');
  }
  assert.equal(await countOpenGenerationJobs(t.db), 3);
});

test('the global queue cap is applied across the keys of one batch', async () => {
  await clearQueue();
  const [a, b] = [await newKey('queue-a'), await newKey('queue-b')];
  const intake = createGenerationIntake(
    { db: t.db, boss, config: { ...config, MAX_QUEUED: 4 } },
    { concurrency: 1, maxBatch: 100 },
  );
  const results = await Promise.all(
    Array.from({ length: 6 }, (_, i) => intake(request(i % 2 ? a : b, `queue ${i}`))),
  );
  assert.deepEqual(
    results.map((r) => (r.ok ? 'ok' : (r.error as ApiError).code)),
    ['ok', 'ok', 'ok', 'ok', 'queue_full', 'queue_full'],
  );
});

test('a row the database rejects fails alone; its batch-mates are created', async () => {
  await clearQueue();
  const key = await newKey('mixed');
  const intake = createGenerationIntake({ db: t.db, boss, config }, { concurrency: 1, maxBatch: 100 });
  // The first runs alone; the other five share a batch, whose bad row (an owner that does not
  // exist: a foreign-key violation) makes the batch retry each create on its own.
  const requests = Array.from({ length: 6 }, (_, i) =>
    request(key, `mixed ${i}`, i === 3 ? randomUUID() : key.id),
  );
  const results = await Promise.all(requests.map((r) => intake(r)));
  assert.deepEqual(
    results.map((r) => r.ok),
    [true, true, true, false, true, true],
  );
  const failed = results[3];
  assert.ok(failed && !failed.ok);
  assert.equal((failed.error as { code?: string }).code, '23503');
  assert.equal(await countOpenGenerationJobs(t.db), 5, 'jobs exactly for the created rows');
  assert.equal((await t.db.selectFrom('generations').select('id').execute()).length, 5);
});

test('Idempotency-Keys in one batch: duplicates replay the first claim; a refused claim is given back', async () => {
  await clearQueue();
  const key = await newKey('idem', 2);
  const intake = createGenerationIntake({ db: t.db, boss, config }, { concurrency: 1, maxBatch: 100 });
  // The first runs alone; the rest share a batch. 'b' twice: one generation, the second replays
  // it. 'c' and its duplicate exceed max_in_flight 2: both refused, and the key stays unused.
  const results = await Promise.all(
    [
      request(key, 'a', key.id, 'key-a'),
      request(key, 'b', key.id, 'key-b'),
      request(key, 'b', key.id, 'key-b'),
      request(key, 'c', key.id, 'key-c'),
      request(key, 'c', key.id, 'key-c'),
    ].map((r) => intake(r)),
  );
  const [a, b, bAgain, c, cAgain] = results;
  assert.ok(a?.ok && 'row' in a);
  assert.ok(b?.ok && 'row' in b);
  assert.ok(bAgain?.ok && 'replayOf' in bAgain);
  assert.equal(bAgain.replayOf.generation_id, b.row.id);
  for (const refused of [c, cAgain]) {
    assert.ok(refused && !refused.ok);
    assert.equal((refused.error as ApiError).code, 'too_many_in_flight');
  }
  const keys = await t.db
    .selectFrom('idempotency_keys')
    .select(['key', 'generation_id'])
    .orderBy('key')
    .execute();
  assert.deepEqual(keys, [
    { key: 'key-a', generation_id: a.row.id },
    { key: 'key-b', generation_id: b.row.id },
  ]);
  assert.equal(await countOpenGenerationJobs(t.db), 2);
});
