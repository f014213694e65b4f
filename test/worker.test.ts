// The worker's job semantics on the real stack: permanent vs transient failures, retries with
// backoff, the job timeout, and SIGTERM with and without time to finish.
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { freePort } from '../bin/local/embedded-postgres.ts';
import { findGeneration } from '../db/generations.repository.ts';
import {
  GENERATION_ATTEMPT_FAILED,
  GENERATION_FAILED,
  GENERATION_STARTED,
  GENERATION_SUCCEEDED,
  WORKER_HEALTH_LISTENING,
} from '../shared/log-events.ts';
import { startS3ServerProcess } from './harness/s3-server.ts';
import { type Stack, startStack } from './harness/stack.ts';

let stack: Stack;

before(async () => {
  stack = await startStack('worker', { WARMUP_SIZE: '64', JOB_RETRY_DELAY_SECONDS: '1' });
});

after(async () => {
  await stack?.stop();
});

const byId = (id: string) => (line: Record<string, unknown>) => line.generation_id === id;

test('the worker reports readiness only with its models loaded, naming provider and model', async (t) => {
  const worker = await stack.startWorker({ HEALTH_PORT: '0' });
  t.after(() => worker.stop());
  const listening = worker.recent().find((line) => line.includes(WORKER_HEALTH_LISTENING));
  assert.ok(listening, 'health listener logged its address before readiness');
  const url = String(JSON.parse(listening).url);
  assert.equal((await fetch(`${url}/healthz`)).status, 200);
  const ready = await fetch(`${url}/readyz`);
  assert.equal(ready.status, 200);
  const body = (await ready.json()) as {
    status: string;
    provider: string;
    model: { family: string };
    checks: Record<string, string>;
  };
  assert.equal(body.status, 'ready');
  assert.equal(body.provider, 'cpu');
  assert.equal(body.model.family, 'OnnxStableDiffusionPipeline');
  assert.deepEqual(body.checks, { models: 'ok', database: 'ok', object_store: 'ok' });

  // One job, then the metrics say what it cost and how it ended.
  const id = await stack.enqueue({ steps: 3 });
  await worker.waitForLog(GENERATION_SUCCEEDED, byId(id));
  // Outcomes are counted once pg-boss has the job settled, just after the log line.
  let scrape = '';
  for (const deadline = Date.now() + 5_000; Date.now() < deadline; ) {
    scrape = await (await fetch(`${url}/metrics`)).text();
    if (scrape.includes('easel_worker_jobs_total{')) break;
  }
  assert.match(scrape, /^easel_worker_ready 1$/m);
  assert.match(scrape, /^easel_worker_jobs_total\{outcome="succeeded"\} 1$/m);
  assert.match(scrape, /^easel_worker_stage_duration_seconds_count\{stage="denoise"\} 1$/m);
  assert.match(scrape, /^easel_worker_denoise_step_duration_seconds_count 1$/m);
  const busy = Number(/^easel_worker_accelerator_busy_seconds_total (\S+)$/m.exec(scrape)?.[1]);
  assert.ok(busy > 0, `accelerator busy seconds: ${busy}`);
});

test('worker readiness fails, naming the check, while the object store is unreachable', async (t) => {
  const port = await freePort();
  const storageDir = await mkdtemp(join(tmpdir(), 'easel-s3-'));
  const s3env = { S3_PORT: String(port), S3_STORAGE_DIR: storageDir };
  let s3 = await startS3ServerProcess(s3env);
  const worker = await stack.startWorker({
    HEALTH_PORT: '0',
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: 'easel-ready',
  });
  t.after(async () => {
    await worker.stop();
    await s3.stop();
  });
  const url = String(
    worker
      .recent()
      .map((l) => (l.includes(WORKER_HEALTH_LISTENING) ? JSON.parse(l).url : undefined))
      .find(Boolean),
  );
  assert.equal((await fetch(`${url}/readyz`)).status, 200);
  await s3.stop();
  const down = await fetch(`${url}/readyz`);
  assert.equal(down.status, 503);
  // The readiness shape every process shares (shared/readiness.ts): a problem naming the checks.
  assert.equal(down.headers.get('content-type'), 'application/problem+json');
  const body = (await down.json()) as { code: string; detail: string; checks: Record<string, string> };
  assert.equal(body.code, 'service_unavailable');
  assert.equal(body.detail, 'Not ready: object_store.');
  assert.equal(body.checks.models, 'ok');
  assert.equal(body.checks.database, 'ok');
  assert.notEqual(body.checks.object_store, 'ok');
  s3 = await startS3ServerProcess(s3env);
  assert.equal((await fetch(`${url}/readyz`)).status, 200);
});

test('a worker whose model folder is broken refuses to start, naming the file', async () => {
  const missing = join(stack.dataDir, 'no-such-model');
  await assert.rejects(stack.startWorker({ MODEL_DIR: missing }), (error: Error) => {
    assert.match(error.message, /exited \(code 1/);
    assert.match(error.message, /model_index\.json/);
    return true;
  });
});

test('a permanent failure (input the model rejects) fails the generation at once, without retries', async (t) => {
  const worker = await stack.startWorker();
  t.after(() => worker.stop());
  // 100 is not a multiple of 8: the API would refuse it, the pipeline refuses it too.
  const id = await stack.enqueue({ width: 100, height: 64 });
  await worker.waitForLog(GENERATION_FAILED, byId(id));
  const row = await findGeneration(stack.database.db, id);
  assert.equal(row?.status, 'failed');
  assert.equal(row?.error_code, 'invalid_generation_input');
  assert.equal(row?.attempts, 1);
  assert.ok(row?.finished_at);
});

test('SIGTERM lets the running job finish within the grace period, then the worker exits 0', async () => {
  const worker = await stack.startWorker({ SHUTDOWN_GRACE_SECONDS: '120' });
  // Long enough (~1 s of denoising here) that SIGTERM lands mid-job.
  const id = await stack.enqueue({ steps: 1000, width: 512, height: 512 });
  await worker.waitForLog(GENERATION_STARTED, byId(id));
  const exit = worker.stop('SIGTERM');
  await worker.waitForLog(GENERATION_SUCCEEDED, byId(id));
  assert.equal(await exit, 0);
  assert.equal((await findGeneration(stack.database.db, id))?.status, 'succeeded');
});

test('SIGTERM past the grace period hands the job back to the queue; another worker completes it', async (t) => {
  const first = await stack.startWorker({ SHUTDOWN_GRACE_SECONDS: '0' });
  t.after(() => first.stop());
  const id = await stack.enqueue({ steps: 1000, width: 2048, height: 2048 });
  await first.waitForLog(GENERATION_STARTED, byId(id));
  const exited = first.stop('SIGTERM');
  await first.waitForLog(GENERATION_ATTEMPT_FAILED, byId(id));
  assert.equal(await exited, 0);
  const row = await findGeneration(stack.database.db, id);
  assert.equal(row?.status, 'queued', 'an interrupted job is visible as waiting again, not stuck running');

  // Make the retry cheap so the second worker finishes quickly; the row is what the job runs.
  await stack.database.db
    .updateTable('generations')
    .set({ width: 64, height: 64 })
    .where('id', '=', id)
    .execute();
  const second = await stack.startWorker();
  t.after(() => second.stop());
  await second.waitForLog(GENERATION_SUCCEEDED, byId(id));
  const done = await findGeneration(stack.database.db, id);
  assert.equal(done?.status, 'succeeded');
  assert.equal(done?.attempts, 2);
});

test('the job timeout aborts the denoising loop; the last attempt fails with code timeout', async (t) => {
  const worker = await stack.startWorker({ JOB_TIMEOUT_SECONDS: '1', JOB_RETRY_LIMIT: '0' });
  t.after(() => worker.stop());
  // About ten times longer than the 1 s timeout here: only the timeout's AbortSignal can end it in time.
  const id = await stack.enqueue({ steps: 1000, width: 2048, height: 2048 });
  const failed = await worker.waitForLog(GENERATION_FAILED, byId(id));
  assert.equal(failed.code, 'timeout');
  const row = await findGeneration(stack.database.db, id);
  assert.equal(row?.status, 'failed');
  assert.equal(row?.error_code, 'timeout');
});

test('storage down during upload: the attempt is retried with backoff and succeeds once storage is back', async () => {
  const port = await freePort();
  const storageDir = await mkdtemp(join(tmpdir(), 'easel-s3-'));
  const s3env = { S3_PORT: String(port), S3_STORAGE_DIR: storageDir };
  let s3 = await startS3ServerProcess(s3env);
  const worker = await stack.startWorker({ S3_ENDPOINT: s3.endpoint, S3_BUCKET: 'easel-retry' });
  await s3.stop();

  const id = await stack.enqueue({ steps: 2 });
  const failed = await worker.waitForLog(GENERATION_ATTEMPT_FAILED, byId(id));
  assert.equal(failed.code, 'storage_unavailable');
  s3 = await startS3ServerProcess(s3env);
  try {
    await worker.waitForLog(GENERATION_SUCCEEDED, byId(id));
    const row = await findGeneration(stack.database.db, id);
    assert.equal(row?.status, 'succeeded');
    assert.ok((row?.attempts ?? 0) >= 2);
  } finally {
    await worker.stop();
    await s3.stop();
  }
});
