// Shared by the fault tests: waiting on conditions, following worker logs, draining a backlog
// while sampling the database, and checking that each generation succeeded exactly once with
// recorded outputs that are exactly what is in the bucket.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { sql } from 'kysely';
import type { Service, ServiceProcess } from '../../bin/local/service-process.ts';
import type { Db } from '../../db/connect.ts';
import { findGeneration } from '../../db/generations.repository.ts';
import { createBoss, ensureGenerationQueue, generationQueue, PGBOSS_SCHEMA } from '../../db/queue.ts';
import type { Generation, GenerationStatus } from '../../db/types.ts';
import { loadWorkerConfig } from '../../gpu-worker/config.ts';
import { DEMO_MODEL_ID } from '../harness/models.ts';
import type { Stack } from '../harness/stack.ts';

// The demo model's queue: every generation here runs on it.
const GENERATION_QUEUE = generationQueue(DEMO_MODEL_ID);

/**
 * Resolves with the condition's first truthy value; polls at a short interval (a wait for a
 * condition, not a sleep: it returns as soon as the condition holds).
 */
export async function waitFor<T>(
  what: string,
  condition: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  { timeoutMs = 60_000, intervalMs = 100 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Races a promise against a deadline, naming what was awaited when it runs out. */
export async function within<T>(what: string, ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface LogEvent {
  /** Date.now() when the line reached the test. */
  at: number;
  service: string;
  record: Record<string, unknown>;
}

/** Keeps every log line of the stack's services, with the time it arrived. */
export function recordLogs(stack: Stack) {
  const events: LogEvent[] = [];
  const listeners = new Set<(event: LogEvent) => void>();
  stack.logs.on('line', (record, service) => {
    const event = { at: Date.now(), service, record };
    events.push(event);
    for (const listener of [...listeners]) listener(event);
  });
  /** Resolves with the first event from now on that matches. */
  const next = (predicate: (event: LogEvent) => boolean, timeoutMs = 60_000, what = 'a log line') => {
    let listener: ((event: LogEvent) => void) | undefined;
    const found = new Promise<LogEvent>((resolve) => {
      listener = (event: LogEvent) => {
        if (predicate(event)) resolve(event);
      };
      listeners.add(listener);
    });
    return within(what, timeoutMs, found).finally(() => {
      if (listener) listeners.delete(listener);
    });
  };
  return {
    events,
    next,
    /** Resolves with the first matching event, including ones already recorded. */
    first(predicate: (event: LogEvent) => boolean, timeoutMs = 60_000, what = 'a log line') {
      const seen = events.find(predicate);
      return seen ? Promise.resolve(seen) : next(predicate, timeoutMs, what);
    },
    /** Events with this `msg` (and matching the predicate). */
    find(msg: string, predicate: (event: LogEvent) => boolean = () => true) {
      return events.filter((e) => e.record.msg === msg && predicate(e));
    },
  };
}

/** A predicate on log events: this message about this generation (and from this worker). */
export const about =
  (msg: string, generationId: string, workerId?: string) =>
  (event: LogEvent): boolean =>
    event.record.msg === msg &&
    event.record.generation_id === generationId &&
    (workerId === undefined || event.record.worker_id === workerId);

export async function statusCounts(db: Db): Promise<Partial<Record<GenerationStatus, number>>> {
  const rows = await db
    .selectFrom('generations')
    .select(['status', sql<number>`count(*)::int`.as('n')])
    .groupBy('status')
    .execute();
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** Generation jobs pg-boss holds as taken by a worker ('active'). */
export async function activeJobs(db: Db): Promise<{ id: string; started_on: Date }[]> {
  const { rows } = await sql<{ id: string; started_on: Date }>`
    select id::text, started_on from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
    where name = ${GENERATION_QUEUE} and state = 'active'`.execute(db);
  return rows;
}

/** pg-boss's state and retry count of each generation job. */
export async function jobStates(db: Db, ids: readonly string[]) {
  const { rows } = await sql<{ id: string; state: string; retry_count: number }>`
    select id::text, state::text, retry_count from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
    where name = ${GENERATION_QUEUE} and id = any(${ids}::uuid[])`.execute(db);
  return new Map(rows.map((r) => [r.id, r]));
}

export async function dbNow(db: Db): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`select now() as now`.execute(db);
  const row = rows[0];
  assert.ok(row);
  return row.now;
}

/** Webhook events recorded per generation and type (every status change records one). */
export async function webhookEventCounts(db: Db, ids: readonly string[]) {
  const rows = await db
    .selectFrom('webhook_events')
    .select(['generation_id', 'type', sql<number>`count(*)::int`.as('n')])
    .where('generation_id', 'in', ids.length > 0 ? [...ids] : ['00000000-0000-0000-0000-000000000000'])
    .groupBy(['generation_id', 'type'])
    .execute();
  const counts = new Map<string, Record<string, number>>();
  for (const row of rows) {
    const entry = counts.get(row.generation_id) ?? {};
    entry[row.type] = row.n;
    counts.set(row.generation_id, entry);
  }
  return counts;
}

/** Every status change of these generations becomes a webhook event row (no sender runs). */
export const ALL_EVENTS = {
  webhook_url: 'http://127.0.0.1:9/never-delivered',
  webhook_events: ['generation.started', 'generation.completed', 'generation.failed', 'generation.canceled'],
};

export function s3ClientFor(stack: Stack): S3Client {
  return new S3Client({
    endpoint: stack.s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'easel', secretAccessKey: 'easel-secret' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/**
 * Checks a succeeded generation against the bucket: one output per requested image, each object
 * present with exactly the recorded bytes and SHA-256, and nothing else under its key prefix
 * (shared/object-store.ts outputKey: generations/<id>/<index>.jpg).
 */
export async function assertOutputsComplete(client: S3Client, bucket: string, row: Generation) {
  assert.equal(row.status, 'succeeded', `generation ${row.id} status`);
  assert.equal(row.outputs.length, row.num_images, `generation ${row.id}: one output per image`);
  const indexes = row.outputs.map((o) => o.index).sort();
  assert.deepEqual(
    indexes,
    Array.from({ length: row.num_images }, (_, i) => i),
    `generation ${row.id}: output indexes`,
  );
  const listed = await client.send(
    new ListObjectsV2Command({ Bucket: bucket, Prefix: `generations/${row.id}/` }),
  );
  const keys = (listed.Contents ?? []).map((o) => o.Key).sort();
  assert.deepEqual(
    keys,
    row.outputs.map((o) => o.key).sort(),
    `generation ${row.id}: objects under its prefix are exactly its outputs`,
  );
  for (const output of row.outputs) {
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: output.key }));
    assert.ok(object.Body, `${output.key}: body`);
    const bytes = Buffer.from(await object.Body.transformToByteArray());
    assert.equal(bytes.byteLength, output.bytes, `${output.key}: bytes`);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), output.sha256, `${output.key}: sha256`);
    // A JPEG is whole when it ends with its EOI marker: a cut-off upload would not.
    assert.equal(bytes.readUInt16BE(bytes.byteLength - 2), 0xffd9, `${output.key}: complete JPEG`);
  }
}

/** The process's resident set size in KiB, read from outside (/proc/<pid>/status VmRSS). */
export function rssKiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match?.[1]) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

export { percentile } from '../bench/bench-common.ts';

/**
 * Runs `sample` again and again, `intervalMs` apart, until stop() (which resolves once the pass
 * in progress has ended): a test's background view of the database while something breaks.
 */
export function startSampler(sample: () => Promise<void>, intervalMs: number): { stop(): Promise<void> } {
  let sampling = true;
  const running = (async () => {
    while (sampling) {
      await sample();
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    stop() {
      sampling = false;
      return running;
    },
  };
}

/**
 * Waits until every one of `count` generations has succeeded, then stops the samplers; resolves
 * with Date.now() when the last one was seen done.
 */
export async function drained(
  db: Db,
  count: number,
  options: { timeoutMs: number; intervalMs: number; samplers?: { stop(): Promise<void> }[] },
): Promise<number> {
  await waitFor(
    `all ${count} generations to succeed`,
    async () => (await statusCounts(db)).succeeded === count,
    {
      timeoutMs: options.timeoutMs,
      intervalMs: options.intervalMs,
    },
  );
  const at = Date.now();
  for (const sampler of options.samplers ?? []) await sampler.stop();
  return at;
}

/**
 * After a drain: each generation succeeded exactly once (one `generation.completed` event, none
 * failed, its job completed) with complete outputs in the bucket; `check` adds a test's own
 * assertions per row. Resolves with the rows, in the order of `ids`.
 */
export async function assertSucceededOnce(
  stack: Stack,
  ids: readonly string[],
  check?: (
    row: Generation,
    events: Record<string, number>,
    job: { state: string; retry_count: number } | undefined,
  ) => void,
): Promise<Generation[]> {
  const db = stack.database.db;
  const rows = await Promise.all(ids.map((id) => findGeneration(db, id)));
  const events = await webhookEventCounts(db, ids);
  const jobs = await jobStates(db, ids);
  const client = s3ClientFor(stack);
  try {
    for (const [i, row] of rows.entries()) {
      assert.ok(row, `generation ${ids[i]} exists`);
      await assertOutputsComplete(client, String(stack.env.S3_BUCKET), row);
      const counts = events.get(row.id) ?? {};
      assert.equal(counts['generation.completed'], 1, `generation ${row.id} completed exactly once`);
      assert.equal(counts['generation.failed'] ?? 0, 0, `generation ${row.id} never failed`);
      assert.equal(jobs.get(row.id)?.state, 'completed', `generation ${row.id}: its job is completed`);
      check?.(row, counts, jobs.get(row.id));
    }
  } finally {
    client.destroy();
  }
  return rows as Generation[];
}

/**
 * Applies the workers' queue policy before anything is enqueued. pg-boss copies the queue's
 * retry limit, backoff, heartbeat and timeout onto each job when it is sent, so jobs enqueued
 * before a worker with this configuration has started would otherwise keep the defaults.
 */
export async function applyWorkerQueuePolicy(stack: Stack, workerEnv: NodeJS.ProcessEnv = {}) {
  const { queuePolicy } = loadWorkerConfig({ ...stack.env, ...workerEnv });
  const boss = createBoss(stack.database.url, { supervise: false, applicationName: 'easel-fault-test' });
  await boss.start();
  try {
    await ensureGenerationQueue(boss, DEMO_MODEL_ID, queuePolicy);
  } finally {
    await boss.stop({ graceful: false });
  }
  return queuePolicy;
}

const alive = (service: ServiceProcess) =>
  service.child.exitCode === null && service.child.signalCode === null;
const isProcess = (service: Service): service is ServiceProcess => 'child' in service;

/**
 * Tears the stack down even when a service ignores SIGTERM (which is what some of these tests
 * look for): each live service gets SIGTERM and `graceMs`, then SIGKILL; then stack.stop().
 * Returns the names of services that had to be killed.
 */
export async function stopStackForcefully(stack: Stack | undefined, graceMs = 15_000): Promise<string[]> {
  if (!stack) return [];
  const services = [...stack.workers, ...stack.senders, ...(stack.api ? [stack.api] : [])]
    .filter(isProcess)
    .filter(alive);
  const killed: string[] = [];
  await Promise.all(
    services.map(async (service) => {
      try {
        await within(`${service.name} to stop`, graceMs, service.stop('SIGTERM'));
      } catch {
        killed.push(`${service.name} (pid ${service.child.pid})`);
        if (alive(service)) {
          const gone = once(service.child, 'exit');
          service.child.kill('SIGKILL');
          await gone;
        }
      }
    }),
  );
  if (killed.length > 0) process.stderr.write(`fault test teardown: SIGKILLed ${killed.join(', ')}\n`);
  await stack.stop();
  return killed;
}
