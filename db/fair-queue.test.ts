// Fair turns between API keys, on real Postgres and real pg-boss: jobs enter through the API's own
// create path (generation-intake) and leave through pg-boss's own fetch, so the order asserted here
// is the order workers see.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, beforeEach, test } from 'node:test';
import { sql } from 'kysely';
import type { PgBoss } from 'pg-boss';
import { createGenerationIntake, type IntakeResult } from '../api/generation-intake.ts';
import { createTestDatabase, type TestDatabase } from '../test/harness/database.ts';
import { createApiKey, updateApiKey } from './api-keys.repository.ts';
import {
  enqueueFairly,
  fairQueuePositions,
  lockForCreate,
  queuePositionSql,
  rebaseFairQueue,
} from './fair-queue.ts';
import {
  cancelGenerationJob,
  createBoss,
  DEFAULT_QUEUE_POLICY,
  ensureGenerationQueue,
  generationQueue,
  PGBOSS_SCHEMA,
} from './queue.ts';
import type { ApiKey } from './types.ts';

const MODEL = 'fair';
const QUEUE = generationQueue(MODEL);

let database: TestDatabase;
let boss: PgBoss;
let intake: ReturnType<typeof createGenerationIntake>;

before(async () => {
  database = await createTestDatabase('fair_queue');
  boss = createBoss(database.url, { supervise: false, applicationName: 'easel-test' });
  await boss.start();
  // No retry delay: a failed attempt is runnable again at once (the retry test).
  await ensureGenerationQueue(boss, MODEL, { ...DEFAULT_QUEUE_POLICY, retryDelaySeconds: 0 });
  intake = createGenerationIntake({
    db: database.db,
    boss,
    config: { MAX_IN_FLIGHT_PER_KEY: 100_000, MAX_QUEUED: 100_000 },
  });
});

after(async () => {
  await boss?.stop({ graceful: false });
  await database?.drop();
});

// Each test starts from an empty queue.
beforeEach(async () => {
  await sql`delete from ${sql.table(`${PGBOSS_SCHEMA}.job`)} where name = ${QUEUE}`.execute(database.db);
  await database.db
    .updateTable('generations')
    .set({ status: 'canceled' })
    .where('status', '=', 'queued')
    .execute();
});

async function key(name: string, weight = 1): Promise<ApiKey> {
  const { apiKey } = await createApiKey(database.db, { name, weight });
  return apiKey;
}

function row(apiKey: ApiKey, prompt: string) {
  return {
    id: randomUUID(),
    api_key_id: apiKey.id,
    prompt,
    negative_prompt: '',
    width: 64,
    height: 64,
    steps: 1,
    guidance_scale: 7.5,
    num_images: 1,
    seed: 1,
    model: MODEL,
  };
}

/** n creates of one key, sent together (they share create batches, in this order). */
async function submit(apiKey: ApiKey, n: number, label = apiKey.name): Promise<string[]> {
  const results: IntakeResult[] = await Promise.all(
    Array.from({ length: n }, (_, i) => intake({ apiKey, row: row(apiKey, `${label}-${i}`) })),
  );
  return results.map((result) => {
    assert.ok(result.ok && 'row' in result, 'admitted');
    return result.row.id;
  });
}

/** Fetches jobs one at a time as a worker does, and says whose they were (by generation id). */
async function fetchOrder(n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const [job] = await boss.fetch(QUEUE, { batchSize: 1 });
    if (!job) break;
    ids.push(job.id);
  }
  // As the worker's claim does: a fetched generation is running (or it would count as prefetched).
  if (ids.length > 0) {
    await database.db.updateTable('generations').set({ status: 'running' }).where('id', 'in', ids).execute();
  }
  return ids;
}

async function positions(ids: readonly string[]): Promise<number[]> {
  const rows = await database.db
    .selectFrom('generations as g')
    .select(['g.id', queuePositionSql('g').as('position')])
    .where('g.id', 'in', [...ids])
    .execute();
  const byId = new Map(rows.map((r) => [r.id, r.position]));
  return ids.map((id) => byId.get(id) ?? -1);
}

test("a key arriving behind another key's backlog is fetched right after its head", async () => {
  const a = await key('backlog');
  const b = await key('late');
  const aIds = await submit(a, 50);
  const [bId] = await submit(b, 1);
  assert.ok(bId);
  assert.deepEqual(
    await positions([aIds[0] as string, bId, aIds[1] as string, aIds[49] as string]),
    [0, 1, 2, 50],
  );

  const order = await fetchOrder(51);
  assert.equal(order.indexOf(bId), 1, 'B is second: after the head A was already waiting with');
  assert.deepEqual(
    order.filter((id) => id !== bId),
    aIds,
    "A's own jobs stay first come, first served",
  );
});

test('with no contention the queue is first come, first served across keys', async () => {
  const a = await key('first');
  const b = await key('second');
  const c = await key('third');
  const ids = [...(await submit(a, 1)), ...(await submit(b, 1)), ...(await submit(c, 1))];
  assert.deepEqual(await positions(ids), [0, 1, 2]);
  assert.deepEqual(await fetchOrder(3), ids);
});

test('weights 2:1 give two turns to one while both keys wait', async () => {
  const a = await key('heavy', 2);
  const b = await key('light', 1);
  const aIds = await submit(a, 40);
  const bIds = await submit(b, 40);
  const order = await fetchOrder(30);
  const turns = order.map((id) => (aIds.includes(id) ? 'A' : bIds.includes(id) ? 'B' : '?')).join('');
  // A was first; B joins level with A's head, then every third turn is B's.
  assert.equal(turns, `AB${'AAB'.repeat(9)}A`);
  assert.deepEqual(
    order.filter((id) => aIds.includes(id)),
    aIds.slice(0, 20),
  );
  // Positions report that order too.
  const rest = [...aIds.slice(20), ...bIds.slice(10)];
  const expected = await fetchOrderPreview(rest);
  assert.deepEqual(await positions(rest), expected);
  // The batched count (creates, event streams) agrees with the single one.
  const batched = await fairQueuePositions(database.db, [QUEUE], rest);
  assert.deepEqual(
    rest.map((id) => batched.get(id)),
    expected,
  );
});

/** Where each id would be fetched, from the jobs' priorities, without fetching. */
async function fetchOrderPreview(ids: readonly string[]): Promise<number[]> {
  const { rows } = await sql<{ id: string }>`
    select id::text from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
    where name = ${QUEUE} and state < 'active' order by priority desc, created_on, id`.execute(database.db);
  const order = rows.map((r) => r.id);
  return ids.map((id) => order.indexOf(id));
}

test("a key that keeps one job waiting still gets only its weight's share", async () => {
  const a = await key('bulk', 2);
  const b = await key('trickle', 1);
  await submit(a, 60);
  let waiting = (await submit(b, 1))[0] as string;
  const bIds = new Set([waiting]);
  let aTurns = 0;
  let bTurns = 0;
  for (let i = 0; i < 45; i++) {
    const [id] = await fetchOrder(1);
    if (id === waiting) {
      bTurns++;
      // B submits its next job the moment the last one is taken: it never has a backlog.
      waiting = (await submit(b, 1))[0] as string;
      bIds.add(waiting);
    } else aTurns++;
  }
  assert.equal(aTurns + bTurns, 45);
  assert.ok(Math.abs(aTurns / bTurns - 2) <= 0.2, `turns A:B ${aTurns}:${bTurns}, want 2:1`);
});

test('a key that canceled its backlog is not pushed behind the jobs it no longer has', async () => {
  const a = await key('canceler');
  const b = await key('steady');
  const canceled = await submit(a, 30);
  await database.db.transaction().execute(async (trx) => {
    await trx.updateTable('generations').set({ status: 'canceled' }).where('id', 'in', canceled).execute();
    for (const id of canceled) await cancelGenerationJob(boss, trx, { id, model: MODEL });
  });
  const bIds = await submit(b, 20);
  const [again] = await submit(a, 1);
  assert.ok(again);
  const order = await fetchOrder(21);
  assert.ok(order.indexOf(again) <= 2, `A's new job is fetched at ${order.indexOf(again)}, not after B's 20`);
  assert.deepEqual(
    order.filter((id) => id !== again),
    bIds,
  );
});

test('a failed attempt goes back to its place: before the jobs queued after it', async () => {
  const a = await key('retried');
  const b = await key('other');
  const aIds = await submit(a, 3);
  const bIds = await submit(b, 3);
  const [first] = await boss.fetch(QUEUE, { batchSize: 1, includeMetadata: true });
  assert.equal(first?.id, aIds[0]);
  await boss.fail(QUEUE, first.id, { message: 'transient' });
  // pg-boss backs a retry off by at least a second; end the backoff now (the order is the point).
  await sql`update ${sql.table(`${PGBOSS_SCHEMA}.job`)} set start_after = now()
    where name = ${QUEUE} and id = ${first.id}`.execute(database.db);
  const order = await fetchOrder(6);
  assert.equal(order[0], aIds[0], 'the retry is next');
  assert.deepEqual(order.slice(1), [bIds[0], aIds[1], bIds[1], aIds[2], bIds[2]]);
});

test("a rebase shifts virtual times back without changing anyone's place", async () => {
  const a = await key('old', 3);
  const b = await key('young', 1);
  await submit(a, 10);
  await submit(b, 10);
  const before = await fetchOrderPreview(await waitingIds());
  const finishes = await database.db
    .selectFrom('fair_share')
    .select(['api_key_id', 'last_finish'])
    .where('queue', '=', QUEUE)
    .execute();
  const shift = await rebaseFairQueue(database.db, QUEUE, 0);
  assert.ok(shift > 0 || finishes.every((f) => f.last_finish <= 0), 'something to shift');
  const head = await sql<{ p: number }>`select max(priority) as p from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
    where name = ${QUEUE} and state < 'active'`.execute(database.db);
  assert.equal(head.rows[0]?.p, 0, 'the head starts at 0 after a rebase');
  assert.deepEqual(await fetchOrderPreview(await waitingIds()), before);
  // Keys go on taking turns from the shifted times: a new key lands level with the heads (A's and
  // B's first jobs), after them.
  const c = await key('after-rebase');
  const [cId] = await submit(c, 1);
  assert.equal((await positions([cId as string]))[0], 2);
});

async function waitingIds(): Promise<string[]> {
  const { rows } = await sql<{ id: string }>`select id::text from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
    where name = ${QUEUE} and state < 'active' order by id`.execute(database.db);
  return rows.map((r) => r.id);
}

test("a new weight orders the key's next jobs", async () => {
  const a = await key('reweighed');
  const b = await key('fixed');
  await updateApiKey(database.db, a.id, { weight: 3 });
  const heavier = { ...a, weight: 3 };
  const aIds = await submit(heavier, 30);
  const bIds = await submit(b, 30);
  const order = await fetchOrder(40);
  const aTurns = order.filter((id) => aIds.includes(id)).length;
  const bTurns = order.filter((id) => bIds.includes(id)).length;
  assert.equal(aTurns, 30, `3:1 — A ${aTurns}, B ${bTurns}`);
  assert.equal(bTurns, 10);
});

test("a key's next create follows its latest start even when an older transaction committed last", async () => {
  const k = await key('overlapping');
  // T1 starts first (its rows' created_at is its start) but takes the key's lock after T2 commits.
  let releaseT1!: () => void;
  const t1Waits = new Promise<void>((resolve) => {
    releaseT1 = resolve;
  });
  let t1Started!: () => void;
  const t1Began = new Promise<void>((resolve) => {
    t1Started = resolve;
  });
  const t1 = database.db.transaction().execute(async (trx) => {
    await sql`select now()`.execute(trx);
    t1Started();
    await t1Waits;
    await lockForCreate(trx, [k.id], [MODEL]);
    return enqueueFairly(
      trx,
      boss,
      [1, 2, 3].map((i) => ({ row: row(k, `t1-${i}`), apiKeyId: k.id, weight: 1 })),
    );
  });
  await t1Began;
  const t2 = await submit(k, 3, 't2');
  releaseT1();
  const t1Rows = (await t1).rows;
  const [next] = await submit(k, 1, 'next');
  const starts = await database.db
    .selectFrom('generations')
    .select(['id', 'fair_start'])
    .where('id', 'in', [...t2, ...t1Rows.map((r) => r.id), next as string])
    .execute();
  const startOf = new Map(starts.map((r) => [r.id, r.fair_start as number]));
  const latestBefore = Math.max(
    ...[...t2, ...t1Rows.map((r) => r.id)].map((id) => startOf.get(id) as number),
  );
  assert.ok(
    (startOf.get(next as string) as number) > latestBefore,
    'the next create starts after all of them',
  );
  // And the fetch order is the key's order of starts: T2's, then T1's, then the next.
  assert.deepEqual(await fetchOrder(7), [
    ...t2,
    ...t1Rows.map((r) => r.id).sort((a, b) => (startOf.get(a) as number) - (startOf.get(b) as number)),
    next,
  ]);
});
