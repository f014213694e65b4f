// A generation whose every attempt kills its worker (out of memory on a huge request, a driver
// crash): with the defaults a user runs (heartbeat 10 s, retry limit 3, monitor 1 s), each
// attempt is back on a new worker within heartbeat + 10 s of the kill, and after the last
// attempt's death the generation ends `failed` with code `worker_lost` and its
// `generation.failed` event within heartbeat + a few seconds, instead of staying `running`.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { findGeneration } from '../../db/generations.repository.ts';
import { GENERATION_STARTED } from '../../shared/log-events.ts';
import { type Stack, startStack } from '../harness/stack.ts';
import {
  ALL_EVENTS,
  about,
  applyWorkerQueuePolicy,
  recordLogs,
  stopStackForcefully,
  waitFor,
  webhookEventCounts,
} from './support.ts';

const WORKER_ENV = { WARMUP_SIZE: '64' };

let stack: Stack;
let policy: Awaited<ReturnType<typeof applyWorkerQueuePolicy>>;

before(async () => {
  stack = await startStack('faults_crash_loop', WORKER_ENV);
  policy = await applyWorkerQueuePolicy(stack);
});

after(async () => {
  await stopStackForcefully(stack);
});

test('a generation that kills every worker it runs on ends failed (worker_lost) with its webhook event', {
  timeout: 240_000,
}, async (t) => {
  const heartbeatMs = policy.heartbeatSeconds * 1000;
  const attempts = policy.retryLimit + 1;
  const logs = recordLogs(stack);
  // Long enough (a few seconds of denoising) that each kill lands mid-job.
  const id = await stack.enqueue({
    width: 512,
    height: 512,
    steps: 500,
    prompt: 'the crash loop',
    ...ALL_EVENTS,
  });

  const recoveries: number[] = [];
  let lastKill = 0;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const started = logs.next(
      about(GENERATION_STARTED, id),
      heartbeatMs + 30_000,
      `attempt ${attempt} to start`,
    );
    const worker = await stack.startWorker();
    const event = await started;
    if (lastKill) recoveries.push(event.at - lastKill);
    const gone = once(worker.child, 'exit');
    worker.child.kill('SIGKILL');
    await gone;
    lastKill = Date.now();
  }
  // A healthy worker: it must not get the job again, and its reconciler records the failure.
  const survivor = await stack.startWorker();
  const row = await waitFor(
    'the generation to end failed',
    async () => {
      const found = await findGeneration(stack.database.db, id);
      return found?.status === 'failed' ? found : undefined;
    },
    { timeoutMs: heartbeatMs + 30_000, intervalMs: 100 },
  );
  const endedAfterMs = (row.finished_at?.getTime() ?? 0) - lastKill;
  t.diagnostic(
    `recoveries after each kill: ${recoveries.join(', ')} ms; failed ${endedAfterMs} ms after the last kill`,
  );

  assert.equal(row.error_code, 'worker_lost');
  assert.equal(row.attempts, attempts);
  assert.ok(row.finished_at);
  // Heartbeat + a few seconds: the lapse, pg-boss's monitor pass and our reconciler's pass.
  assert.ok(endedAfterMs <= heartbeatMs + 6_000, `failed ${endedAfterMs} ms after the last kill`);
  for (const ms of recoveries) assert.ok(ms <= heartbeatMs + 10_000, `an attempt came back after ${ms} ms`);
  const events = (await webhookEventCounts(stack.database.db, [id])).get(id) ?? {};
  assert.equal(events['generation.failed'], 1, JSON.stringify(events));
  assert.equal(events['generation.completed'], undefined);
  assert.equal(
    logs.find(GENERATION_STARTED, (e) => e.record.worker_id === survivor.ready.worker_id).length,
    0,
  );
  assert.equal(
    logs.find(
      'generation failed: its job ended without a worker recording it',
      (e) => e.record.generation_id === id,
    ).length,
    1,
  );
});
