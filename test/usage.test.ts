// Metered usage on the real stack: API and worker processes, Postgres, the S3 server and the demo
// model. Every attempt that ran on the accelerator leaves one ledger record whose microseconds are
// the ones its log line reports and the worker's accelerator-seconds counter adds; GET /v1/usage
// sums them exactly.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { UsageResource } from '../api/usage.schemas.ts';
import type { ServiceProcess } from '../bin/local/service-process.ts';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import {
  GENERATION_ATTEMPT_FAILED,
  GENERATION_CANCELED,
  GENERATION_FAILED,
  GENERATION_SUCCEEDED,
  WORKER_HEALTH_LISTENING,
} from '../shared/log-events.ts';
import { DEMO_MODEL_ID } from './harness/models.ts';
import { listenForProgress, type ProgressNotifications } from './harness/progress-notifications.ts';
import { type RestartableS3Server, startRestartableS3Server } from './harness/s3-server.ts';
import { type Stack, startStack } from './harness/stack.ts';

const OUTCOME_LINES = new Set([
  GENERATION_SUCCEEDED,
  GENERATION_FAILED,
  GENERATION_CANCELED,
  GENERATION_ATTEMPT_FAILED,
]);

let stack: Stack;
let s3: RestartableS3Server;
let worker: ServiceProcess;
let metricsUrl: string;
/** Every outcome line the worker logged, in order. */
const outcomes: Record<string, unknown>[] = [];
let progress: ProgressNotifications;

before(async () => {
  s3 = await startRestartableS3Server();
  stack = await startStack('usage', { WARMUP_SIZE: '64', JOB_RETRY_DELAY_SECONDS: '1' }, { s3 });
  stack.logs.on('line', (record, service) => {
    if (service === 'worker' && OUTCOME_LINES.has(String(record.msg))) outcomes.push(record);
  });
  [, worker] = await Promise.all([stack.startApi(), stack.startWorker({ HEALTH_PORT: '0' })]);
  const listening = worker.recent().find((line) => line.includes(WORKER_HEALTH_LISTENING));
  metricsUrl = `${String(JSON.parse(listening ?? '{}').url)}/metrics`;
  progress = await listenForProgress(stack.database.url);
});

after(async () => {
  await progress?.close();
  await stack?.stop();
});

const byId = (id: string) => (line: Record<string, unknown>) => line.generation_id === id;

async function create(body: Record<string, unknown>): Promise<string> {
  const res = await stack.request('/v1/generations', {
    method: 'POST',
    body: JSON.stringify({ prompt: 'metered', ...body }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return ((await res.json()) as GenerationResource).id;
}

async function usage(query: string): Promise<UsageResource> {
  const res = await stack.request(`/v1/usage${query}`);
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as UsageResource;
}

test('each accelerator run is metered once, in the ledger, the log and the metric alike', async (t) => {
  /** What each generation's attempts should have cost in pixel-steps and images. */
  const expected = new Map<string, { pixelSteps: number; images: number; outcomes: string[] }>();

  // Succeeded, one and two images per request.
  const sizes = [
    { width: 64, height: 64, steps: 3, num_images: 1 },
    { width: 64, height: 64, steps: 2, num_images: 2 },
    { width: 128, height: 64, steps: 4, num_images: 2 },
  ];
  for (const size of sizes) {
    const id = await create(size);
    await worker.waitForLog(GENERATION_SUCCEEDED, byId(id));
    const pixelSteps = size.width * size.height * size.steps * size.num_images;
    expected.set(id, { pixelSteps, images: size.num_images, outcomes: ['succeeded'] });
  }

  // Failed at once: the pipeline refuses a width that is not a multiple of 8 before any step, but
  // the attempt was claimed and the model called.
  const refused = await stack.enqueue({ width: 100, height: 64 });
  const failed = await worker.waitForLog(GENERATION_FAILED, byId(refused));
  assert.equal(typeof failed.accelerator_us, 'number');
  expected.set(refused, { pixelSteps: 0, images: 0, outcomes: ['failed'] });

  // Canceled mid-run: it counts the steps it did.
  const long = await stack.enqueue({ steps: 1000, width: 2048, height: 2048 });
  const stepped = new Promise<void>((resolve) => progress.on(long, resolve));
  await stepped;
  progress.off(long);
  const canceledLine = worker.waitForLog(GENERATION_CANCELED, byId(long));
  assert.equal((await stack.request(`/v1/generations/${long}/cancel`, { method: 'POST' })).status, 202);
  const canceled = await canceledLine;
  const stepsDone = canceled.steps_done as number;
  assert.ok(stepsDone > 0 && stepsDone < 1000, `steps done: ${stepsDone}`);
  expected.set(long, { pixelSteps: 2048 * 2048 * stepsDone, images: 0, outcomes: ['canceled'] });

  // Storage down after the denoise: the attempt is handed back (a retry record with all its steps),
  // and the next one, with storage back, succeeds.
  await s3.kill();
  const retried = await create({ width: 64, height: 64, steps: 2 });
  await worker.waitForLog(GENERATION_ATTEMPT_FAILED, byId(retried));
  await s3.restart();
  await worker.waitForLog(GENERATION_SUCCEEDED, byId(retried));

  // The worker's lines: one per attempt, each with its microseconds.
  const lines = outcomes.filter((line) => typeof line.generation_id === 'string');
  for (const line of lines) {
    assert.ok(
      Number.isSafeInteger(line.accelerator_us),
      `${line.msg}: accelerator_us ${line.accelerator_us}`,
    );
    assert.ok((line.accelerator_us as number) >= 0, String(line.msg));
    assert.equal(typeof line.accelerator_start_ms === 'number', line.msg === GENERATION_SUCCEEDED);
  }
  const retryLines = lines.filter((line) => line.generation_id === retried);
  const retries = retryLines.length - 1;
  assert.ok(retries >= 1, 'at least one attempt was handed back');
  expected.set(retried, {
    pixelSteps: 64 * 64 * 2 * (retries + 1),
    images: 1,
    outcomes: [...Array(retries).fill('retry'), 'succeeded'],
  });
  assert.deepEqual(new Set(lines.map((line) => line.generation_id)), new Set(expected.keys()));

  // The ledger: one record per attempt, numbered as the row counts them, with the log's microseconds.
  const records = await stack.database.db
    .selectFrom('usage_records')
    .selectAll()
    .orderBy('generation_id')
    .orderBy('attempt')
    .execute();
  assert.equal(records.length, lines.length);
  for (const [id, want] of expected) {
    const own = records.filter((r) => r.generation_id === id);
    assert.deepEqual(
      own.map((r) => r.outcome),
      want.outcomes,
      id,
    );
    assert.deepEqual(
      own.map((r) => r.attempt),
      own.map((_, i) => i + 1),
    );
    assert.deepEqual(
      own.map((r) => r.accelerator_us),
      lines.filter((line) => line.generation_id === id).map((line) => line.accelerator_us),
      `${id}: the ledger holds the logged microseconds`,
    );
    assert.equal(
      own.reduce((sum, r) => sum + r.pixel_steps, 0),
      want.pixelSteps,
      `${id} pixel_steps`,
    );
    assert.equal(
      own.reduce((sum, r) => sum + r.images, 0),
      want.images,
      `${id} images`,
    );
    assert.ok(own.every((r) => r.model === DEMO_MODEL_ID));
  }

  // GET /v1/usage sums exactly what the worker logged.
  const loggedUs = lines.reduce((sum, line) => sum + (line.accelerator_us as number), 0);
  t.diagnostic(
    `attempts: ${lines.map((line) => `${String(line.msg).split(';')[0]} ${line.accelerator_us} µs`).join(', ')}`,
  );
  const pixelSteps = [...expected.values()].reduce((sum, e) => sum + e.pixelSteps, 0);
  const images = [...expected.values()].reduce((sum, e) => sum + e.images, 0);
  const byModel = await usage('?group_by=model');
  const total = {
    attempts: lines.length,
    generations: 4,
    images,
    pixel_steps: pixelSteps,
    accelerator_ms: loggedUs / 1000,
  };
  assert.deepEqual(byModel.total, total);
  assert.deepEqual(byModel.data, [{ model: DEMO_MODEL_ID, ...total }]);
  assert.equal(images, 6);
  const byDay = await usage('');
  assert.deepEqual(byDay.total, total, 'the default range holds everything recorded today');

  // The worker's counter, by model, adds the same microseconds.
  const scrape = await (await fetch(metricsUrl)).text();
  const seconds = /^easel_accelerator_seconds_total\{model="demo"\} (\S+)$/m.exec(scrape)?.[1];
  assert.equal(Math.round(Number(seconds) * 1e6), loggedUs, `counter: ${seconds}`);
  assert.doesNotMatch(scrape, /easel_accelerator_seconds_total\{[^}]*api_key/);
});
