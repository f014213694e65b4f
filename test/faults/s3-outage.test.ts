// The object store dies (SIGKILL to the S3 server process) while the worker is uploading a
// backlog, and comes back on the same port a few retries later. Attempts that could not store
// their images go back to the queue (status 'queued' again, visible to clients) and are retried
// with exponential backoff; once storage is back every generation succeeds, and every stored
// image is whole: the recorded size and SHA-256 match the object, nothing extra under the prefix.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { GENERATION_STARTED, GENERATION_SUCCEEDED } from '../../shared/log-events.ts';
import { type RestartableS3Server, startRestartableS3Server } from '../harness/s3-server.ts';
import { type Stack, startStack } from '../harness/stack.ts';
import {
  ALL_EVENTS,
  applyWorkerQueuePolicy,
  assertSucceededOnce,
  drained,
  recordLogs,
  startSampler,
  stopStackForcefully,
  waitFor,
} from './support.ts';

const GENERATIONS = 40;
const RETRY_DELAY_SECONDS = 1;
const WORKER_ENV = {
  WARMUP_SIZE: '64',
  JOB_RETRY_LIMIT: '10',
  JOB_RETRY_DELAY_SECONDS: String(RETRY_DELAY_SECONDS),
};

let s3: RestartableS3Server;
let stack: Stack;

before(async () => {
  s3 = await startRestartableS3Server();
  stack = await startStack('faults_s3', WORKER_ENV, { s3 });
  await applyWorkerQueuePolicy(stack);
});

after(async () => {
  await stopStackForcefully(stack);
});

test('S3 killed during uploads: attempts are requeued with backoff and all succeed once it is back', {
  timeout: 300_000,
}, async (t) => {
  const logs = recordLogs(stack);
  const db = stack.database.db;
  const ids: string[] = [];
  for (let i = 0; i < GENERATIONS; i++) {
    ids.push(
      await stack.enqueue({
        prompt: `s3 outage ${i}`,
        seed: i,
        width: 256 + 64 * (i % 5),
        height: 256,
        steps: 10,
        num_images: 1 + (i % 4),
        ...ALL_EVENTS,
      }),
    );
  }

  // Clients must see a generation whose attempt failed as waiting again, not stuck 'running'.
  const requeuedSeen = new Set<string>();
  const sampler = startSampler(async () => {
    const rows = await db
      .selectFrom('generations')
      .select('id')
      .where('status', '=', 'queued')
      .where('attempts', '>=', 1)
      .execute();
    for (const row of rows) requeuedSeen.add(row.id);
  }, 50);

  const started = Date.now();
  await stack.startWorker({ WORKER_ID: 's3-outage' });
  // Mid-backlog: some generations are stored, one is being worked on, the rest wait.
  await waitFor(
    '5 generations to succeed before the outage',
    () => logs.find(GENERATION_SUCCEEDED).length >= 5,
    {
      intervalMs: 20,
    },
  );
  const succeededBefore = new Set(logs.find(GENERATION_SUCCEEDED).map((e) => String(e.record.generation_id)));
  await s3.kill('SIGKILL');
  const killedAt = Date.now();

  // Down until several generations have failed an attempt and one has failed three times (so its
  // retries waited out growing delays); then back on the same port with the same files.
  const failedAttempts = async () => {
    const { rows } = await sql<{ id: string; attempts: number }>`
      select id::text, attempts from generations where status = 'queued' and attempts >= 1`.execute(db);
    return rows;
  };
  await waitFor(
    'attempts to fail while storage is down',
    async () => {
      const rows = await failedAttempts();
      return rows.length >= 3 && rows.some((r) => r.attempts >= 3);
    },
    { timeoutMs: 60_000, intervalMs: 50 },
  );
  await s3.restart();
  const restartedAt = Date.now();

  const drainedAt = await drained(db, GENERATIONS, {
    timeoutMs: 180_000,
    intervalMs: 200,
    samplers: [sampler],
  });
  const rows = await assertSucceededOnce(stack, ids, (row, _events, job) => {
    assert.equal(job?.retry_count, row.attempts - 1, `generation ${row.id}: pg-boss retries`);
  });

  const retried = rows.filter((r) => r.attempts > 1);
  assert.ok(retried.length >= 3, `several generations needed more than one attempt (${retried.length})`);
  assert.ok(
    retried.every((r) => !succeededBefore.has(r.id)),
    'no generation stored before the outage ran again',
  );
  assert.ok(
    requeuedSeen.size >= 3,
    `generations were seen back in 'queued' between attempts (${requeuedSeen.size})`,
  );

  // Backoff: attempt k+1 of a generation starts at least retryDelay * 2^(k-1) s after attempt k
  // (pg-boss: delay * 2^retry * (1 + random)), so the gaps grow instead of hammering storage.
  const gapsById = new Map<string, number[]>();
  const violations: string[] = [];
  for (const row of retried) {
    const starts = logs.find(GENERATION_STARTED, (e) => e.record.generation_id === row.id).map((e) => e.at);
    assert.equal(starts.length, row.attempts, `generation ${row.id}: one 'generation started' per attempt`);
    const gaps = starts.slice(1).map((at, k) => at - (starts[k] ?? at));
    gapsById.set(row.id, gaps);
    gaps.forEach((gap, k) => {
      const floor = RETRY_DELAY_SECONDS * 1000 * 2 ** k - 100;
      if (gap < floor) violations.push(`${row.id}: retry ${k + 1} after ${gap} ms (< ${floor})`);
    });
  }
  assert.deepEqual(violations, [], 'every retry waited out its backoff');

  // The only failures were the storage outage: no attempt failed for another reason.
  const failureCodes = new Map<string, number>();
  for (const event of logs.events) {
    const level = Number(event.record.level);
    if (event.service !== 'worker' || level < 40 || typeof event.record.code !== 'string') continue;
    failureCodes.set(event.record.code, (failureCodes.get(event.record.code) ?? 0) + 1);
  }
  assert.deepEqual([...failureCodes.keys()], ['storage_unavailable'], 'attempts failed only for storage');

  const attempts = rows.map((r) => r.attempts);
  const longest = [...gapsById.values()].sort((a, b) => b.length - a.length)[0] ?? [];
  t.diagnostic(
    `outage: S3 down ${restartedAt - killedAt} ms (killed after ${succeededBefore.size} successes, ` +
      `${Math.round((killedAt - started) / 1000)} s in); drained ${drainedAt - restartedAt} ms after restart`,
  );
  t.diagnostic(
    `attempts: ${retried.length}/${GENERATIONS} generations retried, max ${Math.max(...attempts)} attempts; ` +
      `seen back in 'queued': ${requeuedSeen.size}`,
  );
  t.diagnostic(`longest retry chain, gaps between starts (ms): ${longest.join(', ')}`);
  t.diagnostic(`failed attempts logged: ${JSON.stringify(Object.fromEntries(failureCodes))}`);
});
