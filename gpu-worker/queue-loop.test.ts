// The queue loop's scheduling against real pg-boss on a real Postgres: what overlaps with what.
// The stages are instrumented stand-ins whose every step the test releases by hand, so each
// ordering below is forced by the loop, not by timing.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import type { PgBoss } from 'pg-boss';
import pino from 'pino';
import { createBoss, ensureGenerationQueue, generationQueue, PGBOSS_SCHEMA } from '../db/queue.ts';
import { createTestDatabase, type TestDatabase } from '../test/harness/database.ts';
import { DEMO_MODEL_ID } from '../test/harness/models.ts';
import type {
  DenoisedJob,
  GenerationStages,
  HeldJob,
  PreparedJob,
  Settlement,
} from './generation.handler.ts';
import { startQueueLoop } from './queue-loop.ts';

// The demo model's queue: every generation here runs on it.
const GENERATION_QUEUE = generationQueue(DEMO_MODEL_ID);

let database: TestDatabase;
let boss: PgBoss;

before(async () => {
  database = await createTestDatabase('queue_loop');
  boss = createBoss(database.url, { applicationName: 'queue-loop-test' });
  await boss.start();
  await ensureGenerationQueue(boss, DEMO_MODEL_ID, {
    expireInSeconds: 60,
    retryLimit: 2,
    retryDelaySeconds: 1,
    retryDelayMaxSeconds: 1,
    heartbeatSeconds: 10,
  });
});

after(async () => {
  await boss.stop({ graceful: false });
  await database.drop();
});

function deferred() {
  let release!: () => void;
  const promise = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { promise, release };
}

/** Stages that log each step and wait for the test to release denoise and finish per job. */
function instrumentedStages(
  outcomeFor: (id: string, retryCount: number) => Settlement = () => ({ outcome: 'succeeded' }),
) {
  const log: string[] = [];
  const events = new EventEmitter();
  const gates = new Map<string, ReturnType<typeof deferred>>();
  const gate = (key: string) => {
    let g = gates.get(key);
    if (!g) {
      g = deferred();
      gates.set(key, g);
    }
    return g;
  };
  let denoising = 0;
  let maxDenoising = 0;
  const record = (entry: string) => {
    log.push(entry);
    events.emit(entry);
  };
  const idOf = (job: HeldJob) => (job.data as { generation_id: string }).generation_id;
  const stages: GenerationStages = {
    async prepare(job) {
      const id = idOf(job);
      record(`prepare:${id}`);
      return { ctx: { job, id }, generation: {}, prompt: {}, negative: {} } as unknown as PreparedJob;
    },
    async denoise(prepared) {
      const id = prepared.ctx.id;
      denoising++;
      maxDenoising = Math.max(maxDenoising, denoising);
      record(`denoise:start:${id}`);
      await gate(`denoise:${id}`).promise;
      denoising--;
      record(`denoise:end:${id}`);
      const now = performance.now();
      return { ...prepared, acceleratorStart: now, acceleratorEnd: now } as DenoisedJob;
    },
    async finish(denoised) {
      const id = denoised.ctx.id;
      record(`finish:start:${id}`);
      await gate(`finish:${id}`).promise;
      record(`finish:end:${id}`);
      return outcomeFor(id, denoised.ctx.job.retryCount);
    },
  };
  return {
    stages,
    log,
    release: (key: string) => gate(key).release(),
    /** Resolves once `entry` has been logged (at once if it already was). */
    async reached(entry: string, times = 1) {
      while (log.filter((e) => e === entry).length < times) await once(events, entry);
    },
    get maxDenoising() {
      return maxDenoising;
    },
  };
}

async function send(): Promise<string> {
  const id = randomUUID();
  await boss.send(GENERATION_QUEUE, { v: 1, generation_id: id }, { id });
  return id;
}

async function jobState(id: string): Promise<string | undefined> {
  const { rows } = await sql<{ state: string }>`
    select state from ${sql.table(`${PGBOSS_SCHEMA}.job`)} where id = ${id}`.execute(database.db);
  return rows[0]?.state;
}

const logger = pino({ level: 'silent' });

test('the next job is prepared during the current denoise, and a tail runs alongside the next denoise', async () => {
  const [a, b, c] = [await send(), await send(), await send()];
  const s = instrumentedStages();
  const loop = startQueueLoop({
    boss,
    queue: GENERATION_QUEUE,
    stages: s.stages,
    logger,
    heartbeatSeconds: 10,
    prefetchLeadMs: 60_000,
    maxTails: 2,
  });
  try {
    await s.reached(`denoise:start:${a}`);
    // Prefetched while A still holds the accelerator.
    await s.reached(`prepare:${b}`);
    assert.ok(!s.log.includes(`denoise:start:${b}`), 'B must not denoise while A does');

    s.release(`denoise:${a}`);
    await s.reached(`denoise:start:${b}`);
    // A's tail is still running (its finish is held), yet B is on the accelerator.
    assert.ok(s.log.includes(`finish:start:${a}`));
    assert.ok(!s.log.includes(`finish:end:${a}`));
    // A stays an active pg-boss job until its tail settles it: a crash now would hand it back.
    assert.equal(await jobState(a), 'active');

    s.release(`denoise:${b}`);
    await s.reached(`prepare:${c}`);
    await s.reached(`finish:start:${b}`);
    // Two tails in flight (A, B): C waits for one of them before it may denoise.
    assert.ok(!s.log.includes(`denoise:start:${c}`));
    s.release(`finish:${a}`);
    await s.reached(`denoise:start:${c}`);
    assert.ok(s.log.indexOf(`finish:end:${a}`) < s.log.indexOf(`denoise:start:${c}`));

    s.release(`denoise:${c}`);
    s.release(`finish:${b}`);
    s.release(`finish:${c}`);
  } finally {
    await loop.stop();
  }
  assert.equal(s.maxDenoising, 1, 'never two generations on the accelerator');
  for (const id of [a, b, c]) assert.equal(await jobState(id), 'completed');
  assert.equal(loop.held, 0);
});

test('stop() takes no new job, lets the jobs in hand settle, and leaves the rest queued', async () => {
  const [a, b] = [await send(), await send()];
  const s = instrumentedStages();
  // B may have been prefetched before the stop: then it is run to the end, not stranded.
  s.release(`denoise:${b}`);
  s.release(`finish:${b}`);
  const loop = startQueueLoop({
    boss,
    queue: GENERATION_QUEUE,
    stages: s.stages,
    logger,
    heartbeatSeconds: 10,
    prefetchLeadMs: 0,
  });
  await s.reached(`denoise:start:${a}`);
  const stopped = loop.stop();
  s.release(`denoise:${a}`);
  await s.reached(`finish:start:${a}`);
  s.release(`finish:${a}`);
  await stopped;
  assert.equal(await jobState(a), 'completed');
  // B was never taken (or, if prefetched before the stop, was run to the end): never stranded.
  const stateB = await jobState(b);
  assert.ok(stateB === 'created' || stateB === 'completed', `B is ${stateB}`);
  assert.equal(loop.held, 0);
  if (stateB === 'created') await boss.deleteJob(GENERATION_QUEUE, b);
});

test('a retry settlement fails the attempt so pg-boss retries it; a permanent one completes', async () => {
  const [retried, ended] = [await send(), await send()];
  const s = instrumentedStages((id, retryCount) => {
    if (id === retried && retryCount === 0)
      return { outcome: 'retry', error: { code: 'storage_unavailable', message: 'down', permanent: false } };
    if (id === ended) return { outcome: 'failed' };
    return { outcome: 'succeeded' };
  });
  for (const id of [retried, ended]) {
    s.release(`denoise:${id}`);
    s.release(`finish:${id}`);
  }
  const loop = startQueueLoop({
    boss,
    queue: GENERATION_QUEUE,
    stages: s.stages,
    logger,
    heartbeatSeconds: 10,
    prefetchLeadMs: 0,
  });
  try {
    // The retry's backoff (1 s) ends with no NOTIFY; the loop's backstop poll takes it again.
    await s.reached(`finish:end:${retried}`, 2);
    await s.reached(`finish:end:${ended}`);
  } finally {
    await loop.stop();
  }
  assert.equal(await jobState(retried), 'completed');
  assert.equal(await jobState(ended), 'completed');
  const { rows } = await sql<{ retry_count: number }>`
    select retry_count from ${sql.table(`${PGBOSS_SCHEMA}.job`)} where id = ${retried}`.execute(database.db);
  assert.equal(rows[0]?.retry_count, 1);
});
