// Cancel, live progress and ETAs on the real stack: API and worker as processes, pg-boss,
// Postgres NOTIFY, the demo model through ONNX Runtime. Long jobs (1000 steps at 2048×2048,
// about 10 s here) come from stack.enqueue, which bypasses the API's limits.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import type { GenerationListResource } from '../api/generations.schemas.ts';
import type { ServiceProcess } from '../bin/local/service-process.ts';
import { createApiKey } from '../db/api-keys.repository.ts';
import { findGeneration } from '../db/generations.repository.ts';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import {
  GENERATION_CANCELED,
  GENERATION_FAILED,
  GENERATION_STARTED,
  GENERATION_SUCCEEDED,
  LISTEN_CONNECTION_READY,
} from '../shared/log-events.ts';
import { listenForProgress, type ProgressNotifications } from './harness/progress-notifications.ts';
import { type Stack, startStack } from './harness/stack.ts';

const LONG = { steps: 1000, width: 2048, height: 2048 } as const;

let stack: Stack;
let otherKey: string;
/** LISTENs on the progress channel; tests subscribe per generation id. */
let progress: ProgressNotifications;
/** One worker for the tests that do not need an empty queue; started on first use. */
let shared: ServiceProcess | undefined;

before(async () => {
  stack = await startStack('cancel', { WARMUP_SIZE: '64' });
  await stack.startApi();
  otherKey = (await createApiKey(stack.database.db, { name: 'other' })).key;
  progress = await listenForProgress(stack.database.url);
});

after(async () => {
  await progress?.close();
  await stack?.stop();
});

const byId = (id: string) => (line: Record<string, unknown>) => line.generation_id === id;

async function sharedWorker(): Promise<ServiceProcess> {
  shared ??= await stack.startWorker();
  return shared;
}

async function get(id: string): Promise<GenerationResource> {
  const res = await stack.request(`/v1/generations/${id}`);
  assert.equal(res.status, 200);
  return (await res.json()) as GenerationResource;
}

function cancel(id: string, init: RequestInit = {}) {
  return stack.request(`/v1/generations/${id}/cancel`, { method: 'POST', ...init });
}

async function jobState(id: string): Promise<string | undefined> {
  const { rows } = await sql<{ state: string }>`select state from pgboss.job where id = ${id}`.execute(
    stack.database.db,
  );
  return rows[0]?.state;
}

/**
 * Reads the resource over HTTP on every progress NOTIFY for the id, one read at a time (so the
 * readings are in order), until `enough` says stop.
 */
function followProgress(id: string, enough: (readings: GenerationResource[]) => boolean) {
  const readings: GenerationResource[] = [];
  let chain = Promise.resolve();
  let done = false;
  return {
    readings,
    reached: new Promise<GenerationResource[]>((resolve, reject) => {
      progress.on(id, () => {
        chain = chain.then(async () => {
          if (done) return;
          try {
            readings.push(await get(id));
            if (enough(readings)) {
              done = true;
              resolve(readings);
            }
          } catch (error) {
            done = true;
            reject(error);
          }
        });
      });
    }),
    async stop() {
      progress.off(id);
      done = true;
      await chain;
    },
  };
}

test('a queued generation is canceled at once, with its job, and never runs', async (t) => {
  const created = await stack.request('/v1/generations', {
    method: 'POST',
    body: JSON.stringify({ prompt: 'never runs', width: 64, height: 64, steps: 2 }),
  });
  assert.equal(created.status, 202);
  const { id } = (await created.json()) as GenerationResource;

  const res = await cancel(id);
  assert.equal(res.status, 200);
  const canceled = (await res.json()) as GenerationResource;
  assert.equal(canceled.status, 'canceled');
  assert.equal(canceled.cancel_requested, true);
  assert.equal(canceled.queue_position, null);
  assert.equal(canceled.eta, null);
  assert.equal(typeof canceled.finished_at, 'string');
  assert.equal(await jobState(id), 'cancelled', 'the pg-boss job is cancelled with the row');

  const again = await cancel(id);
  assert.equal(again.status, 200, 'repeating a cancel is harmless');
  const repeated = (await again.json()) as GenerationResource;
  assert.equal(repeated.status, 'canceled');
  assert.equal(repeated.finished_at, canceled.finished_at, 'a repeated cancel changes nothing');

  const foreign = await cancel(id, { headers: { authorization: `Bearer ${otherKey}` } });
  assert.equal(foreign.status, 404);
  assert.equal(foreign.headers.get('content-type'), 'application/problem+json');
  assert.equal(((await foreign.json()) as { code: string }).code, 'not_found');
  assert.equal((await findGeneration(stack.database.db, id))?.status, 'canceled', 'untouched by 404');

  // A worker that starts now runs the next job and never the canceled one.
  const worker = await stack.startWorker();
  t.after(() => worker.stop());
  const next = await stack.request('/v1/generations', {
    method: 'POST',
    body: JSON.stringify({ prompt: 'runs', width: 64, height: 64, steps: 2 }),
  });
  const nextId = ((await next.json()) as GenerationResource).id;
  await worker.waitForLog(GENERATION_SUCCEEDED, byId(nextId));
  const row = await findGeneration(stack.database.db, id);
  assert.equal(row?.status, 'canceled');
  assert.equal(row?.attempts, 0);
  assert.deepEqual(row?.outputs, []);
  assert.equal(row?.started_at, null);
  assert.ok(
    !worker.recent().some((line) => line.includes(id)),
    'the worker never logged the canceled generation',
  );
});

test('queue positions fall as earlier jobs finish; queued generations carry an ETA once a worker of their model is live', async (t) => {
  const first = await stack.enqueue({ steps: 2 });
  const second = await stack.enqueue(LONG);
  const third = await stack.enqueue(LONG);

  // One listing, so all three estimates share one `now`.
  const res = await stack.request('/v1/generations?status=queued');
  const listed = ((await res.json()) as GenerationListResource).data.reverse();
  assert.deepEqual(
    listed.map((g) => [g.id, g.queue_position]),
    [
      [first, 0],
      [second, 1],
      [third, 2],
    ],
  );
  // No worker of the model is live yet: the resource says so, and there is no ETA to give.
  assert.deepEqual(
    listed.map((g) => [g.live_workers, g.eta]),
    [
      [0, null],
      [0, null],
      [0, null],
    ],
  );

  const worker = await stack.startWorker();
  t.after(() => worker.stop());
  const secondStarted = worker.waitForLog(GENERATION_STARTED, byId(second));
  await worker.waitForLog(GENERATION_SUCCEEDED, byId(first));
  const later = await get(third);
  assert.equal(later.status, 'queued');
  assert.ok(later.queue_position !== null && later.queue_position <= 1, `position ${later.queue_position}`);
  assert.equal(later.live_workers, 1);
  // The earlier test left a succeeded generation to average over.
  assert.ok(Date.parse(later.eta ?? '') > Date.now() - 60_000, `queued ETA: ${later.eta}`);

  // Clean up: the queued one is canceled at once; the running one once its worker has stopped it,
  // which `Prefer: wait` waits for.
  assert.equal((await cancel(third)).status, 200);
  await secondStarted;
  const waited = await cancel(second, { headers: { prefer: 'wait=30' } });
  assert.equal(waited.status, 200);
  assert.equal(waited.headers.get('preference-applied'), 'wait=30');
  assert.equal(((await waited.json()) as GenerationResource).status, 'canceled');
});

test('a running generation stops within a step of its cancel; progress only moves forward', async (t) => {
  const worker = await sharedWorker();
  const id = await stack.enqueue(LONG);
  const follow = followProgress(id, (readings) => readings.filter((r) => r.status === 'running').length >= 3);
  const readings = await follow.reached;

  const stopped = worker.waitForLog(GENERATION_CANCELED, byId(id));
  const res = await cancel(id);
  assert.equal(res.status, 202, 'the stop is pending until the worker confirms it');
  const pending = (await res.json()) as GenerationResource;
  assert.equal(pending.status, 'running');
  assert.equal(pending.cancel_requested, true);
  assert.ok(pending.progress);

  const log = await stopped;
  await follow.stop();
  const stepsDone = log.steps_done as number;
  assert.equal(log.steps_total, 1000);
  assert.ok(stepsDone >= pending.progress.step, `steps_done ${stepsDone}`);
  assert.ok(stepsDone < 500, `the worker ran ${stepsDone} of 1000 steps after the cancel`);

  const row = await findGeneration(stack.database.db, id);
  assert.equal(row?.status, 'canceled');
  assert.equal(row?.progress_step, stepsDone, 'the last step reached is persisted');
  assert.equal(row?.progress_total, 1000);
  assert.equal(row?.attempts, 1, 'canceled, not retried');
  assert.deepEqual(row?.outputs, []);

  const resource = await get(id);
  assert.equal(resource.status, 'canceled');
  assert.deepEqual(resource.progress, { step: stepsDone, total: 1000 });
  assert.equal(resource.eta, null);
  assert.equal(typeof resource.timings.queued_ms, 'number');
  assert.equal(typeof resource.timings.run_ms, 'number');

  // Progress as clients saw it, read on each progress notification.
  const running = readings.filter((r) => r.status === 'running');
  const steps = running.map((r) => r.progress?.step ?? 0);
  t.diagnostic(
    `steps seen while running: ${steps.join(', ')}; 202 at step ${pending.progress.step}; stopped at ${stepsDone}`,
  );
  for (let i = 1; i < steps.length; i++) {
    assert.ok((steps[i] ?? 0) >= (steps[i - 1] ?? 0), `progress went back: ${steps.join(', ')}`);
  }
  assert.ok(
    running.every((r) => r.progress?.total === 1000),
    'every reading counts against the total',
  );
  assert.ok(
    running.some((r) => typeof r.eta === 'string' && Date.parse(r.eta) > Date.now() - 60_000),
    'a running generation with a measured step time has an ETA',
  );

  // The worker goes on with the next job (so the canceled one's job has been settled by now).
  const next = await stack.enqueue({ steps: 2 });
  await worker.waitForLog(GENERATION_SUCCEEDED, byId(next));
  assert.equal(await jobState(id), 'completed', 'the job completes; it neither fails nor retries');
});

test('a cancel whose NOTIFY never arrived is seen by the next progress write', async () => {
  const worker = await sharedWorker();
  const id = await stack.enqueue(LONG);
  await worker.waitForLog(GENERATION_STARTED, byId(id));
  const stopped = worker.waitForLog(GENERATION_CANCELED, byId(id));
  // What the API does, minus the NOTIFY: as if the worker's LISTEN connection had been down.
  await stack.database.db
    .updateTable('generations')
    .set({ cancel_requested_at: new Date() })
    .where('id', '=', id)
    .execute();
  const log = await stopped;
  assert.ok((log.steps_done as number) < 1000);
  assert.equal((await findGeneration(stack.database.db, id))?.status, 'canceled');
});

test('a cancel requested for a generation whose worker died ends it when it is next claimed', async () => {
  const worker = await sharedWorker();
  await worker.stop();
  shared = undefined;
  const id = await stack.enqueue({ steps: 2 });
  // As left by a worker that died after the client's cancel: running, cancel requested.
  await stack.database.db
    .updateTable('generations')
    .set({ status: 'running', cancel_requested_at: new Date() })
    .where('id', '=', id)
    .execute();
  const next = await sharedWorker();
  const log = await next.waitForLog(GENERATION_CANCELED, byId(id));
  assert.equal(log.steps_done, 0);
  const row = await findGeneration(stack.database.db, id);
  assert.equal(row?.status, 'canceled');
  assert.equal(row?.attempts, 0);
  const after = await stack.enqueue({ steps: 2 });
  await next.waitForLog(GENERATION_SUCCEEDED, byId(after));
  assert.equal(await jobState(id), 'completed');
});

test('the worker re-establishes its cancel LISTEN connection and still stops jobs', async () => {
  const worker = await sharedWorker();
  const back = worker.waitForLog(LISTEN_CONNECTION_READY);
  const { rows } = await sql<{ killed: boolean }>`
    select pg_terminate_backend(pid) as killed from pg_stat_activity
    where datname = current_database() and application_name = 'easel-worker-cancel'`.execute(
    stack.database.db,
  );
  assert.deepEqual(rows, [{ killed: true }]);
  await back;

  const id = await stack.enqueue(LONG);
  await worker.waitForLog(GENERATION_STARTED, byId(id));
  const stopped = worker.waitForLog(GENERATION_CANCELED, byId(id));
  assert.equal((await cancel(id)).status, 202);
  const log = await stopped;
  assert.ok((log.steps_done as number) < 1000);
});

test('a succeeded or failed generation cannot be canceled: 409 generation_finished', async () => {
  const worker = await sharedWorker();
  const succeeded = await stack.enqueue({ steps: 2 });
  await worker.waitForLog(GENERATION_SUCCEEDED, byId(succeeded));
  // 100 is not a multiple of 8: the pipeline refuses it, a permanent failure.
  const failed = await stack.enqueue({ width: 100 });
  await worker.waitForLog(GENERATION_FAILED, byId(failed));

  for (const [id, status] of [
    [succeeded, 'succeeded'],
    [failed, 'failed'],
  ] as const) {
    const res = await cancel(id);
    assert.equal(res.status, 409);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as { code: string; type: string; detail: string };
    assert.equal(problem.code, 'generation_finished');
    assert.equal(problem.type, 'urn:easel:problem:generation_finished');
    assert.match(problem.detail, new RegExp(status));
    const row = await findGeneration(stack.database.db, id);
    assert.equal(row?.status, status, 'unchanged');
    assert.equal(row?.cancel_requested_at, null);
  }
  await worker.stop();
  shared = undefined;
});
