// SIGTERM (a deploy, a scale-down) in the middle of a job, with more jobs waiting behind it:
// with enough grace the running job finishes and the worker exits 0; with none the job goes back
// to the queue and another worker completes it. Either way, once the worker has exited nothing is
// left 'running' (row) or 'active' (pg-boss job) without a live worker behind it.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ServiceProcess } from '../../bin/local/service-process.ts';
import { findGeneration } from '../../db/generations.repository.ts';
import { GENERATION_STARTED, GENERATION_SUCCEEDED } from '../../shared/log-events.ts';
import { type Stack, startStack } from '../harness/stack.ts';
import {
  about,
  activeJobs,
  applyWorkerQueuePolicy,
  jobStates,
  recordLogs,
  statusCounts,
  stopStackForcefully,
  waitFor,
  within,
} from './support.ts';

const WORKER_ENV = { WARMUP_SIZE: '64', JOB_RETRY_DELAY_SECONDS: '1', JOB_RETRY_DELAY_MAX_SECONDS: '2' };
let stack: Stack;
let logs: ReturnType<typeof recordLogs>;

before(async () => {
  stack = await startStack('faults_sigterm', WORKER_ENV);
  logs = recordLogs(stack);
  await applyWorkerQueuePolicy(stack);
});

after(async () => {
  await stopStackForcefully(stack);
});

/** Nothing may look taken once no worker is alive: no row 'running', no pg-boss job 'active'. */
async function assertNothingHeld(what: string) {
  const db = stack.database.db;
  const running = await db.selectFrom('generations').select('id').where('status', '=', 'running').execute();
  assert.deepEqual(running, [], `${what}: no generation is left 'running' without a live worker`);
  assert.deepEqual(await activeJobs(db), [], `${what}: no job is left 'active' without a live worker`);
}

/** Small jobs queued behind the long one: a worker may have fetched (prefetched) them. */
async function enqueueFollowers(label: string) {
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push(await stack.enqueue({ prompt: `${label} follower ${i}`, seed: i }));
  return ids;
}

/** Each follower either finished or is waiting in the queue again; none is half-taken. */
async function assertFollowersConsistent(ids: string[]) {
  const db = stack.database.db;
  const jobs = await jobStates(db, ids);
  const seen: string[] = [];
  for (const id of ids) {
    const row = await findGeneration(db, id);
    const job = jobs.get(id);
    seen.push(`${row?.status}/${job?.state}`);
    if (row?.status === 'succeeded') assert.equal(job?.state, 'completed', `follower ${id}`);
    else {
      assert.equal(row?.status, 'queued', `follower ${id} is back to (or still) queued`);
      assert.ok(
        job && ['created', 'retry'].includes(job.state),
        `follower ${id}: job fetchable (${job?.state})`,
      );
    }
  }
  return seen;
}

async function drainWith(worker: ServiceProcess, ids: string[]) {
  await waitFor(
    'every generation to succeed',
    async () => {
      const rows = await Promise.all(ids.map((id) => findGeneration(stack.database.db, id)));
      return rows.every((row) => row?.status === 'succeeded');
    },
    { timeoutMs: 60_000 },
  );
  await worker.stop();
  await assertNothingHeld('after the draining worker stopped');
}

const TIMEOUT = { timeout: 180_000 };

test(
  'SIGTERM with a generous grace period: the running job finishes, the worker exits 0',
  TIMEOUT,
  async (t) => {
    const worker = await stack.startWorker({ SHUTDOWN_GRACE_SECONDS: '120', WORKER_ID: 'sigterm-grace' });
    // ~1.5 s of denoising here, so SIGTERM lands mid-job.
    const id = await stack.enqueue({ steps: 1000, width: 1024, height: 1024 });
    const followers = await enqueueFollowers('grace');
    await logs.first(about(GENERATION_STARTED, id, 'sigterm-grace'), 30_000, 'the long job to start');
    const signalled = Date.now();
    const code = await within('the worker to exit', 60_000, worker.stop('SIGTERM'));
    const exitMs = Date.now() - signalled;
    assert.equal(code, 0, 'exit code');
    const row = await findGeneration(stack.database.db, id);
    assert.equal(row?.status, 'succeeded', 'the job running at SIGTERM finished');
    assert.equal(row?.attempts, 1);
    assert.equal((await jobStates(stack.database.db, [id])).get(id)?.state, 'completed');
    await assertNothingHeld('after a graceful exit');
    const followerStates = await assertFollowersConsistent(followers);
    t.diagnostic(`SIGTERM to exit: ${exitMs} ms; followers (row/job) at exit: ${followerStates.join(', ')}`);

    await drainWith(await stack.startWorker({ WORKER_ID: 'sigterm-drain' }), [id, ...followers]);
  },
);

test(
  'SIGTERM with no grace: the job goes back to the queue and a second worker completes it',
  TIMEOUT,
  async (t) => {
    const first = await stack.startWorker({ SHUTDOWN_GRACE_SECONDS: '0', WORKER_ID: 'sigterm-no-grace' });
    // Seconds of denoising: only the shutdown can end this attempt before the test checks it.
    const id = await stack.enqueue({ steps: 1000, width: 2048, height: 2048 });
    const followers = await enqueueFollowers('no-grace');
    await logs.first(about(GENERATION_STARTED, id, 'sigterm-no-grace'), 30_000, 'the long job to start');
    const signalled = Date.now();
    const code = await within('the worker to exit', 30_000, first.stop('SIGTERM'));
    const exitMs = Date.now() - signalled;
    assert.equal(code, 0, 'exit code');

    const row = await findGeneration(stack.database.db, id);
    assert.equal(row?.status, 'queued', 'an interrupted job is visible as waiting again, not stuck running');
    assert.equal(row?.attempts, 1);
    const job = (await jobStates(stack.database.db, [id])).get(id);
    assert.ok(
      job && ['created', 'retry'].includes(job.state),
      `its job can be fetched again (${job?.state})`,
    );
    await assertNothingHeld('after an exit past the grace period');
    const followerStates = await assertFollowersConsistent(followers);
    t.diagnostic(`SIGTERM to exit: ${exitMs} ms; followers (row/job) at exit: ${followerStates.join(', ')}`);

    // Make the retry cheap: the row is what the job runs.
    await stack.database.db
      .updateTable('generations')
      .set({ width: 64, height: 64, steps: 2 })
      .where('id', '=', id)
      .execute();
    const second = await stack.startWorker({ WORKER_ID: 'sigterm-second' });
    await logs.first(
      about(GENERATION_SUCCEEDED, id, 'sigterm-second'),
      60_000,
      'the second worker to finish it',
    );
    const done = await findGeneration(stack.database.db, id);
    assert.equal(done?.status, 'succeeded');
    assert.equal(done?.attempts, 2);
    await drainWith(second, [id, ...followers]);
    const counts = await statusCounts(stack.database.db);
    assert.deepEqual(Object.keys(counts), ['succeeded'], 'no generation is left in another status');
  },
);
