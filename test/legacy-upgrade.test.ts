// An upgrade must not strand what was accepted before it: generations queued before the service
// had several models (no model, jobs in the old single queue) are moved by the API to the default
// model's queue, and run there. A legacy job a worker holds is left where it is.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { adoptLegacyGenerations } from '../db/legacy-queue.ts';
import {
  createBoss,
  ensureGenerationQueue,
  generationQueue,
  LEGACY_GENERATION_QUEUE,
  PGBOSS_SCHEMA,
} from '../db/queue.ts';
import { GENERATION_SUCCEEDED } from '../shared/log-events.ts';
import { DEMO_MODEL_ID } from './harness/models.ts';
import { type Stack, startStack } from './harness/stack.ts';

let stack: Stack;

before(async () => {
  stack = await startStack('legacy_upgrade');
});

after(async () => {
  await stack?.stop();
});

async function jobsOf(ids: readonly string[]) {
  const { rows } = await sql<{ id: string; name: string; state: string }>`
    select id::text, name, state::text from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
    where id = any(${ids}::uuid[]) order by name`.execute(stack.database.db);
  return rows;
}

test('waiting legacy jobs move to a model queue in one step; a held one stays; a second pass moves nothing', async () => {
  const waiting = [await stack.enqueue({ model: null }), await stack.enqueue({ model: null })];
  const held = await stack.enqueue({ model: null });
  const boss = createBoss(stack.database.url, { supervise: false });
  await boss.start();
  try {
    // The API makes the model's queue exist before it moves anything into it.
    await ensureGenerationQueue(boss, DEMO_MODEL_ID);
    // A worker of the old version holds this one.
    await sql`update ${sql.table(`${PGBOSS_SCHEMA}.job`)} set state = 'active', started_on = now()
      where name = ${LEGACY_GENERATION_QUEUE} and id = ${held}`.execute(stack.database.db);
    assert.equal(await adoptLegacyGenerations(stack.database.db, boss, DEMO_MODEL_ID), 2);
    assert.equal(await adoptLegacyGenerations(stack.database.db, boss, DEMO_MODEL_ID), 0);
  } finally {
    await boss.stop({ graceful: false });
  }
  assert.deepEqual(
    (await jobsOf(waiting)).map((j) => [j.name, j.state]),
    [
      [generationQueue(DEMO_MODEL_ID), 'created'],
      [generationQueue(DEMO_MODEL_ID), 'created'],
    ],
    'each job once, in the model queue, with its id',
  );
  assert.deepEqual(
    (await jobsOf([held])).map((j) => [j.name, j.state]),
    [[LEGACY_GENERATION_QUEUE, 'active']],
  );
  const rows = await stack.database.db
    .selectFrom('generations')
    .select(['id', 'model'])
    .where('id', 'in', [...waiting, held])
    .execute();
  assert.deepEqual(Object.fromEntries(rows.map((r) => [r.id, r.model])), {
    [waiting[0] as string]: DEMO_MODEL_ID,
    [waiting[1] as string]: DEMO_MODEL_ID,
    [held]: null,
  });
  await stack.database.db.deleteFrom('generations').where('id', '=', held).execute();
});

test('after an upgrade the API moves queued legacy generations to the default model and they run', {
  timeout: 60_000,
}, async () => {
  const legacy = [await stack.enqueue({ model: null }), await stack.enqueue({ model: null })];
  await stack.startApi();
  const worker = await stack.startWorker({ WARMUP_SIZE: '64', QUEUE_POLL_SECONDS: '3600' });
  for (const id of legacy) {
    await worker.waitForLog(GENERATION_SUCCEEDED, (line) => line.generation_id === id, { past: true });
    const res = await stack.request(`/v1/generations/${id}`);
    const body = (await res.json()) as { status: string; model: string | null };
    assert.deepEqual([body.status, body.model], ['succeeded', DEMO_MODEL_ID]);
  }
});
