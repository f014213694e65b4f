// A worker killed with SIGKILL (power loss, OOM killer) 20 times in the middle of a backlog:
// every generation still ends succeeded exactly once with complete outputs, and every job the
// dead worker held (the one denoising, one prefetched, one still uploading) is handed back by
// pg-boss's heartbeat check and is runnable again (its retry not left waiting out the backoff)
// within HEARTBEAT_SECONDS + 10 s of the kill.
//
// What that bound covers is Easel's recovery: the heartbeat lapse, a live worker's supervisor
// noticing it, and the reconciler making the retry runnable at once. When a live worker then
// claims it depends on how many other handed-back jobs are ahead of it and on there being a live
// worker at all: here the only worker is killed every 1–3 s and a replacement needs 1–3 s to boot
// on a loaded 2-vCPU box, so the claim can wait several more seconds behind its peers. The claim
// times are reported, and every job must still end succeeded exactly once.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import type { ServiceProcess } from '../../bin/local/service-process.ts';
import { generationQueue, PGBOSS_SCHEMA } from '../../db/queue.ts';
import { GENERATION_SKIPPED, GENERATION_STARTED } from '../../shared/log-events.ts';
import { DEMO_MODEL_ID } from '../harness/models.ts';
import { type Stack, startStack } from '../harness/stack.ts';
import {
  ALL_EVENTS,
  activeJobs,
  applyWorkerQueuePolicy,
  assertSucceededOnce,
  dbNow,
  drained,
  type LogEvent,
  percentile,
  recordLogs,
  startSampler,
  statusCounts,
  stopStackForcefully,
  within,
} from './support.ts';

// The demo model's queue: every generation here runs on it.
const GENERATION_QUEUE = generationQueue(DEMO_MODEL_ID);

const GENERATIONS = 60;
const KILLS = 20;
const HEARTBEAT_SECONDS = 10;
const RECOVERY_BOUND_MS = (HEARTBEAT_SECONDS + 10) * 1000;

// Jobs of 50–300 ms each with the demo model, so a kill lands mid-job and the backlog outlasts
// the kills; several images per job so kills also land between uploads.
const SHAPES = [
  { width: 512, height: 512, steps: 60, num_images: 1 },
  { width: 768, height: 768, steps: 60, num_images: 2 },
  { width: 1024, height: 1024, steps: 80, num_images: 1 },
  { width: 512, height: 512, steps: 30, num_images: 4 },
];

// The defaults a user runs (heartbeat 10 s, monitor 1 s, retry delays 2–60 s: a crashed
// attempt's retry skips the backoff), except that a job may be killed several times here and
// must not run out of attempts.
const WORKER_ENV = {
  WARMUP_SIZE: '64',
  HEARTBEAT_SECONDS: String(HEARTBEAT_SECONDS),
  JOB_RETRY_LIMIT: '20',
};

let stack: Stack;

before(async () => {
  stack = await startStack('faults_sigkill', WORKER_ENV);
  await applyWorkerQueuePolicy(stack);
});

after(async () => {
  await stopStackForcefully(stack);
});

interface Kill {
  index: number;
  workerId: string;
  /** When the worker was spawned and when it was killed (Date.now()). */
  spawned: number;
  at: number;
  /** Database time right after the worker died. */
  atDb: Date;
  /** Generation jobs the dead worker held (pg-boss 'active', fetched by it). */
  held: string[];
}

interface Pending {
  id: string;
  kill: number;
  killedAt: Date;
  handedBackAt?: number;
  /** When it was first seen runnable again (queued with no backoff left) or already reclaimed. */
  runnableAt?: number;
}

test(`SIGKILL mid-job ${KILLS} times: every job recovers within heartbeat + 10 s and ends succeeded once`, {
  timeout: 360_000,
}, async (t) => {
  const started = Date.now();
  const db = stack.database.db;
  const logs = recordLogs(stack);
  const ids: string[] = [];
  for (let i = 0; i < GENERATIONS; i++) {
    const shape = SHAPES[i % SHAPES.length];
    ids.push(await stack.enqueue({ ...shape, seed: i, prompt: `sigkill backlog ${i}`, ...ALL_EVENTS }));
  }

  // Follows each held job in pg-boss's table: when it stops being 'active' under the dead
  // worker's claim (handed back) and when a live worker claims it again (started_on moves past
  // the kill). A reclaimed job may be prefetched by a worker that is then killed before it
  // logs 'generation started', so the claim, not the log line, is what recovery is timed by.
  const pending = new Map<string, Pending>();
  const handedBack = new Map<string, number>();
  const reclaimed = new Map<string, number>();
  const runnable = new Map<string, number>();
  /** Every change of a held job's (state, started_on) the sampler saw, for late ones' reports. */
  const seenStates = new Map<string, string[]>();
  const sampler = startSampler(async () => {
    if (pending.size === 0) return;
    const { rows } = await sql<{ id: string; state: string; started_on: Date | null; due: boolean }>`
        select id::text, state::text, started_on, start_after <= now() as due
        from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
        where name = ${GENERATION_QUEUE}
          and id = any(${[...new Set([...pending.values()].map((p) => p.id))]}::uuid[])`.execute(db);
    const now = Date.now();
    const byId = new Map(rows.map((row) => [row.id, row]));
    for (const [key, entry] of pending) {
      const row = byId.get(entry.id);
      if (!row) continue;
      const seen = seenStates.get(row.id) ?? [];
      const label = `${row.state}@${row.started_on?.toISOString().slice(11, 23)}`;
      if (!seen.at(-1)?.endsWith(` ${label}`)) seen.push(`+${now - started} ms ${label}`);
      seenStates.set(row.id, seen);
      const claimedAgain = (row.started_on?.getTime() ?? 0) > entry.killedAt.getTime();
      if (entry.handedBackAt === undefined && (row.state !== 'active' || claimedAgain)) {
        entry.handedBackAt = now;
      }
      const queued = row.state === 'created' || row.state === 'retry';
      if (entry.runnableAt === undefined && ((queued && row.due) || claimedAgain)) {
        entry.runnableAt = now;
      }
      if (claimedAgain && row.started_on) {
        handedBack.set(key, entry.handedBackAt ?? now);
        runnable.set(key, entry.runnableAt ?? now);
        reclaimed.set(key, row.started_on.getTime());
        pending.delete(key);
      }
    }
  }, 100);

  /** Resolves when this worker has logged `msg` for the n-th time (counting lines already seen). */
  const nth = (workerId: string, msg: string, n: number) => {
    const matches = (e: LogEvent) => e.record.msg === msg && e.record.worker_id === workerId;
    let seen = logs.events.filter(matches).length;
    if (seen >= n) return Promise.resolve();
    return logs.next((e) => matches(e) && ++seen >= n, 60_000, `${workerId} to log '${msg}' ${n} times`);
  };

  const kills: Kill[] = [];
  let spawnedAt = await dbNow(db);
  let spawned = Date.now();
  let workerId = 'sigkill-w0';
  let worker: ServiceProcess = await stack.startWorker({ WORKER_ID: workerId });
  for (let k = 0; k < KILLS; k++) {
    // Kill at the 1st, 2nd or 3rd job this worker starts, so some jobs finish between kills.
    await nth(workerId, GENERATION_STARTED, 1 + (k % 3));
    const at = Date.now();
    await within(`${workerId} to die`, 10_000, worker.stop('SIGKILL'));
    const atDb = await dbNow(db);
    // Before the next worker starts, 'active' jobs fetched since this one was spawned are its own.
    const held = (await activeJobs(db))
      .filter((job) => job.started_on.getTime() >= spawnedAt.getTime())
      .map((job) => job.id);
    kills.push({ index: k, workerId, spawned, at, atDb, held });
    // Keyed by kill: a reclaimed job may be held (and killed) again before the sampler sees it.
    for (const id of held) pending.set(`${k}:${id}`, { id, kill: k, killedAt: atDb });
    // The replacement starts at once: it takes other jobs while the killed ones wait for their
    // heartbeat to lapse, and a live worker's pg-boss supervisor is what hands them back.
    spawnedAt = atDb;
    spawned = Date.now();
    workerId = `sigkill-w${k + 1}`;
    worker = await stack.startWorker({ WORKER_ID: workerId });
  }
  const lastKillAt = Date.now();

  const drainedAt = await drained(db, GENERATIONS, {
    timeoutMs: 180_000,
    intervalMs: 250,
    samplers: [sampler],
  });

  // Recovery of a held job: runnable again (queued with no backoff left) or already claimed by
  // a live worker (pg-boss started_on), or, if the sampler missed both, the first line about it
  // from a later worker. Reclaimed is that claim; 'started again' is the first 'generation
  // started' (or skip, when its result was recorded before the kill) from a later worker: both
  // add the wait behind other handed-back jobs on the one live worker.
  const recoveries: number[] = [];
  const claims: number[] = [];
  const handbacks: number[] = [];
  const restarts: number[] = [];
  const late: string[] = [];
  const restartedAs = new Map<string, number>();
  const perKill: string[] = [];
  for (const kill of kills) {
    assert.ok(kill.held.length >= 1, `kill ${kill.index} (${kill.workerId}) happened mid-job: it held a job`);
    const times: string[] = [];
    for (const id of kill.held) {
      const later = (e: LogEvent) =>
        e.at > kill.at && e.record.generation_id === id && e.record.worker_id !== kill.workerId;
      const firstLine = logs.events.find(later);
      const restart = logs.events.find(
        (e) => later(e) && (e.record.msg === GENERATION_STARTED || e.record.msg === GENERATION_SKIPPED),
      );
      const claim = reclaimed.get(`${kill.index}:${id}`);
      const claimedAt = Math.min(
        claim ?? Number.POSITIVE_INFINITY,
        firstLine?.at ?? Number.POSITIVE_INFINITY,
      );
      assert.ok(Number.isFinite(claimedAt), `generation ${id}, held by ${kill.workerId}, was taken up again`);
      const recoveredAt = Math.min(runnable.get(`${kill.index}:${id}`) ?? claimedAt, claimedAt);
      const ms = recoveredAt - kill.at;
      recoveries.push(ms);
      claims.push(claimedAt - kill.at);
      const back = handedBack.get(`${kill.index}:${id}`);
      if (back !== undefined) handbacks.push(back - kill.at);
      if (restart) {
        restarts.push(restart.at - kill.at);
        const msg = String(restart.record.msg);
        restartedAs.set(msg, (restartedAs.get(msg) ?? 0) + 1);
      }
      times.push(
        `${back === undefined ? '?' : back - kill.at}/${ms}/${claimedAt - kill.at}/${restart ? restart.at - kill.at : '-'}`,
      );
      if (ms > RECOVERY_BOUND_MS) {
        late.push(`${id} (kill ${kill.index}): ${ms} ms`);
        const lines = logs.events
          .filter((e) => e.record.generation_id === id)
          .map((e) => `+${e.at - started} ms ${e.record.worker_id}: ${e.record.msg}`);
        t.diagnostic(`late ${id}: log ${lines.join(' | ')}; job ${(seenStates.get(id) ?? []).join(' | ')}`);
      }
    }
    perKill.push(
      `#${kill.index} at +${kill.at - started} ms, worker up ${kill.at - kill.spawned} ms, ` +
        `held ${kill.held.length}; handed back/runnable/reclaimed/started again after (ms): ${times.join(', ')}`,
    );
  }

  const rows = await assertSucceededOnce(stack, ids, (row, events) => {
    assert.equal(events['generation.started'], row.attempts, `generation ${row.id}: one start per attempt`);
  });
  assert.deepEqual(await statusCounts(db), { succeeded: GENERATIONS }, 'nothing left running or queued');

  const stats = (values: number[]) =>
    `min ${Math.min(...values)}, median ${percentile(values, 50)}, p90 ${percentile(values, 90)}, max ${Math.max(...values)}`;
  const attempts = rows.map((r) => r.attempts);
  t.diagnostic(
    `kills: ${kills.length}; jobs held per kill: ${kills.map((k) => k.held.length).join(',')} (total ${recoveries.length})`,
  );
  t.diagnostic(`handed back by pg-boss after the kill (ms, sampled every 100 ms): ${stats(handbacks)}`);
  t.diagnostic(`runnable again after the kill (ms): ${stats(recoveries)} (bound ${RECOVERY_BOUND_MS})`);
  t.diagnostic(`reclaimed by a live worker after the kill (ms): ${stats(claims)}`);
  t.diagnostic(`'generation started' again after the kill (ms): ${stats(restarts)}`);
  t.diagnostic(`restarted as: ${JSON.stringify(Object.fromEntries(restartedAs))}`);
  for (const line of perKill) t.diagnostic(`kill ${line}`);
  t.diagnostic(
    `attempts per generation: max ${Math.max(...attempts)}, generations with >1 attempt: ${attempts.filter((a) => a > 1).length}`,
  );
  t.diagnostic(
    `durations: kills phase ${Math.round((lastKillAt - started) / 1000)} s, drain after last kill ` +
      `${Math.round((drainedAt - lastKillAt) / 1000)} s, total ${Math.round((Date.now() - started) / 1000)} s`,
  );
  assert.deepEqual(
    late,
    [],
    `every killed job is runnable again within ${RECOVERY_BOUND_MS} ms of the kill. Late ones mean no live ` +
      "worker's pg-boss supervisor handed them back in time, or their retry waited out the backoff " +
      "(see the 'handed back' diagnostics): a live worker's supervisor fails a lapsed heartbeat within " +
      'QUEUE_MONITOR_SECONDS and its reconciler makes the retry runnable and wakes the workers',
  );
});
