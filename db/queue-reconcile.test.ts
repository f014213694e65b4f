// The reconciliation between generations rows and their pg-boss jobs, on real Postgres and real
// pg-boss: jobs ended by pg-boss's own supervisor (lapsed heartbeat) or lost behind our back end
// their rows as failed with a code that says why, once; healthy rows are never touched.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import type { PgBoss } from 'pg-boss';
import { createTestDatabase, type TestDatabase } from '../test/harness/database.ts';
import { DEMO_MODEL_ID } from '../test/harness/models.ts';
import { createApiKey } from './api-keys.repository.ts';
import { findGeneration, insertGeneration, markRunning } from './generations.repository.ts';
import {
  createBoss,
  DEFAULT_QUEUE_POLICY,
  enqueueGeneration,
  ensureGenerationQueue,
  generationQueue,
  PGBOSS_SCHEMA,
} from './queue.ts';
import { expediteCrashRetries, findQueueDrift, reconcileQueueDrift } from './queue-reconcile.ts';
import { ensureWebhookQueue } from './webhook-queue.ts';

// The demo model's queue: every generation here runs on it.
const GENERATION_QUEUE = generationQueue(DEMO_MODEL_ID);

let database: TestDatabase;
let boss: PgBoss;
let apiKeyId: string;

before(async () => {
  database = await createTestDatabase('queue_reconcile');
  boss = createBoss(database.url, { supervise: false, applicationName: 'easel-test' });
  await boss.start();
  await ensureGenerationQueue(boss, DEMO_MODEL_ID, { ...DEFAULT_QUEUE_POLICY, retryLimit: 1 });
  await ensureWebhookQueue(boss);
  apiKeyId = (await createApiKey(database.db, { name: 'reconcile' })).apiKey.id;
});

after(async () => {
  await boss?.stop({ graceful: false });
  await database?.drop();
});

const job = sql.table(`${PGBOSS_SCHEMA}.job`);

async function create(): Promise<string> {
  const id = randomUUID();
  await database.db.transaction().execute(async (trx) => {
    await insertGeneration(trx, {
      id,
      api_key_id: apiKeyId,
      prompt: 'reconcile me',
      negative_prompt: '',
      width: 64,
      height: 64,
      steps: 1,
      guidance_scale: 7.5,
      num_images: 1,
      seed: 1,
      model: DEMO_MODEL_ID,
      webhook_url: 'http://127.0.0.1:9/hook',
      webhook_events: ['generation.failed'],
    });
    await enqueueGeneration(boss, trx, { id, model: DEMO_MODEL_ID });
  });
  return id;
}

/** Fetches this job as a worker would and claims its row. */
async function take(id: string) {
  const [fetched] = await boss.fetch(GENERATION_QUEUE, { batchSize: 1 });
  assert.equal(fetched?.id, id, 'jobs are fetched in creation order');
  await markRunning(database.db, id, 'test-worker');
  return fetched;
}

/** What pg-boss's supervisor does to a job whose worker stopped heartbeating. */
async function loseHeartbeat(id: string) {
  await sql`update ${job} set heartbeat_on = now() - interval '1 hour' where name = ${GENERATION_QUEUE} and id = ${id}`.execute(
    database.db,
  );
  // pg-boss claims a queue's monitor pass per interval; this pass must run now.
  await sql`update ${sql.table(`${PGBOSS_SCHEMA}.queue`)} set monitor_claim_on = null, monitor_on = null
    where name = ${GENERATION_QUEUE}`.execute(database.db);
  await boss.supervise(GENERATION_QUEUE);
}

async function jobState(id: string) {
  const { rows } = await sql<{ state: string; start_after: Date }>`
    select state::text, start_after from ${job} where name = ${GENERATION_QUEUE} and id = ${id}`.execute(
    database.db,
  );
  return rows[0];
}

test('a crashed attempt with retries left is made runnable now instead of after the backoff', async () => {
  const id = await create();
  await take(id);
  await loseHeartbeat(id);
  const handedBack = await jobState(id);
  assert.equal(handedBack?.state, 'retry');
  assert.ok((handedBack?.start_after.getTime() ?? 0) > Date.now(), 'pg-boss backs the retry off');

  assert.equal(await expediteCrashRetries(database.db, GENERATION_QUEUE), 1);
  const [again] = await boss.fetch(GENERATION_QUEUE, { batchSize: 1 });
  assert.equal(again?.id, id, 'fetchable at once');
  // Not a drift: the job is active again.
  assert.deepEqual(
    (await findQueueDrift(database.db)).map((d) => d.id).filter((x) => x === id),
    [],
  );
  // Its last attempt dies too: now the job is failed and the row still says running.
  await markRunning(database.db, id, 'test-worker-2');
  await loseHeartbeat(id);
  assert.equal((await jobState(id))?.state, 'failed');

  const ended = await reconcileQueueDrift(database.db, boss);
  assert.deepEqual(ended, [{ id, code: 'worker_lost' }]);
  const row = await findGeneration(database.db, id);
  assert.equal(row?.status, 'failed');
  assert.equal(row?.error_code, 'worker_lost');
  const events = await database.db
    .selectFrom('webhook_events')
    .select('type')
    .where('generation_id', '=', id)
    .execute();
  assert.deepEqual(
    events.map((e) => e.type),
    ['generation.failed'],
  );
  assert.deepEqual(await reconcileQueueDrift(database.db, boss), [], 'a second pass changes nothing');
});

test('the incremental pass sees jobs failed since its clock; the full pass also finds lost jobs', async () => {
  const before = new Date(Date.now() - 1_000);
  // A worker that failed its job (with our failure shape) but died before recording the row:
  // fail every attempt until pg-boss has none left.
  const failedByWorker = await create();
  await take(failedByWorker);
  const failure = { code: 'model_error', message: 'broken unet', permanent: true };
  await boss.fail(GENERATION_QUEUE, failedByWorker, failure);
  assert.equal((await jobState(failedByWorker))?.state, 'retry');
  await expediteCrashRetries(database.db, GENERATION_QUEUE); // not a crash: its backoff stays
  await sql`update ${job} set start_after = now() where name = ${GENERATION_QUEUE} and id = ${failedByWorker}`.execute(
    database.db,
  );
  await take(failedByWorker);
  await boss.fail(GENERATION_QUEUE, failedByWorker, failure);
  assert.equal((await jobState(failedByWorker))?.state, 'failed');

  const lost = await create();
  await sql`delete from ${job} where name = ${GENERATION_QUEUE} and id = ${lost}`.execute(database.db);
  const running = await create();
  await take(running);
  const queued = await create();

  const incremental = await findQueueDrift(database.db, { since: before });
  assert.deepEqual(
    incremental.map((d) => d.id),
    [failedByWorker],
    'only the failed job, found through completed_on',
  );
  const ended = await reconcileQueueDrift(database.db, boss);
  const codes = Object.fromEntries(ended.map((e) => [e.id, e.code]));
  assert.deepEqual(codes, { [failedByWorker]: 'model_error', [lost]: 'job_lost' });
  assert.equal((await findGeneration(database.db, running))?.status, 'running');
  assert.equal((await findGeneration(database.db, queued))?.status, 'queued');
});
