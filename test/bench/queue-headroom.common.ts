// The queue-headroom measurement, shared by test/bench/queue-headroom.bench.ts (its backlog created
// through the API) and test/bench/fairness.bench.ts (the same run over a FIFO backlog and a fair
// one): the settings, the simulated worker processes (queue-headroom.worker.ts) and the measured
// window. A bench fills the database's backlog its own way, then calls runSimulatedWorkers.
//   BENCH_WORKERS (100), BENCH_WORKER_PROCS (2), BENCH_GPU_MS (240), BENCH_DURATION (s, 20),
//   BENCH_WARMUP (s, 3), BENCH_BOSS_POOL (10 per process), BENCH_DB_POOL (5 per process)
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { sql } from 'kysely';
import type { Db } from '../../db/connect.ts';
import { generationQueue, PGBOSS_SCHEMA } from '../../db/queue.ts';
import type { TestDatabase } from '../harness/database.ts';
import { DEMO_MODEL_ID } from '../harness/models.ts';
import {
  backendPids,
  type CpuSnapshot,
  cpuBetween,
  cpuSnapshot,
  machineDescription,
  percentile,
  REPO_ROOT,
  round,
  sleep,
} from './bench-common.ts';
import type { WorkerProcessResult } from './queue-headroom.worker.ts';

// The demo model's queue: every generation here runs on it.
export const GENERATION_QUEUE = generationQueue(DEMO_MODEL_ID);

export const WORKERS = Number(process.env.BENCH_WORKERS ?? 100);
export const PROCS = Number(process.env.BENCH_WORKER_PROCS ?? 2);
export const GPU_MS = Number(process.env.BENCH_GPU_MS ?? 240);
export const DURATION_S = Number(process.env.BENCH_DURATION ?? 20);
export const WARMUP_S = Number(process.env.BENCH_WARMUP ?? 3);
export const BOSS_POOL = Number(process.env.BENCH_BOSS_POOL ?? 10);
export const DB_POOL = Number(process.env.BENCH_DB_POOL ?? 5);

export const CEILING = WORKERS / (GPU_MS / 1000);
export const RATE_GOAL = 400;
export const PICKUP_P95_GOAL_MS = 50;
// Enough that the backlog outlasts the run at the ceiling, with a margin.
export const BACKLOG = Math.ceil((CEILING * (WARMUP_S + DURATION_S + 5) * 1.2) / 1000) * 1000;

/**
 * The machine line with the Postgres version; fails early when the server has too few free
 * connections for the worker processes' pools.
 */
export async function headroomMachine(db: Db): Promise<string> {
  const { rows: settings } = await sql<{ v: string; max: number; used: number }>`
    select current_setting('server_version') as v, current_setting('max_connections')::int as max,
      (select count(*)::int from pg_stat_activity) as used`.execute(db);
  const setting = settings[0];
  const wanted = PROCS * (BOSS_POOL + DB_POOL + 2) + 10;
  if (setting && setting.used + wanted > setting.max) {
    throw new Error(
      `Postgres has ${setting.used} of max_connections=${setting.max} in use; this bench needs about ${wanted} more`,
    );
  }
  return machineDescription(`PostgreSQL ${setting?.v ?? '?'}`);
}

export type CallStats = { p50: number; p95: number };

export interface HeadroomRun {
  /** Completions per second over the measured window. */
  rate: number;
  completionsInWindow: number;
  completionsTotal: number;
  /** Pickup latencies (ms) of pickups inside the window. */
  pickups: number[];
  calls: WorkerProcessResult['calls'];
  runTwice: number;
  errors: string[];
  count: { succeeded: number; queued: number; open_jobs: number };
  cpu: Record<string, number>;
  workerCores: number;
  emptyFetches: number;
  wakeups: number;
  /** p50/p95 of one of the per-job times: 0 fetch, 1 update, 2 complete, 3 the simulated GPU wait. */
  callStats(i: 0 | 1 | 2 | 3): CallStats;
}

/**
 * Runs the simulated workers against the backlog already in `database` and measures the window.
 * The worker processes are pushed to `children` as they start, so the caller's cleanup can stop
 * them if the bench is interrupted.
 */
export async function runSimulatedWorkers(
  database: TestDatabase,
  children: ChildProcess[],
): Promise<HeadroomRun> {
  const { db } = database;
  // The worker processes, each with its own pg-boss and pool.
  const perProc = Array.from(
    { length: PROCS },
    (_, i) => Math.floor(WORKERS / PROCS) + (i < WORKERS % PROCS ? 1 : 0),
  );
  const mine: ChildProcess[] = [];
  const results: Promise<WorkerProcessResult>[] = [];
  const ready: Promise<void>[] = [];
  for (const workers of perProc) {
    const child = spawn(process.execPath, ['test/bench/queue-headroom.worker.ts'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: {
        ...process.env,
        DATABASE_URL: database.url,
        WORKERS: String(workers),
        GPU_MS: String(GPU_MS),
        BOSS_POOL: String(BOSS_POOL),
        DB_POOL: String(DB_POOL),
      },
    });
    children.push(child);
    mine.push(child);
    const exited = once(child, 'exit').then(([code]) => {
      throw new Error(`worker process exited (code ${code}) before reporting`);
    });
    const message = (type: string) =>
      new Promise<unknown>((resolve) =>
        child.on('message', (m: { type: string }) => {
          if (m.type === type) resolve(m);
        }),
      );
    ready.push(Promise.race([message('ready').then(() => undefined), exited]));
    results.push(Promise.race([message('result') as Promise<WorkerProcessResult>, exited]));
  }
  await Promise.all(ready);

  const startAt = Date.now() + 200;
  const windowStart = startAt + WARMUP_S * 1000;
  const stopAt = windowStart + DURATION_S * 1000;
  for (const child of mine) child.send({ type: 'start', startAt, stopAt });
  process.stderr.write(
    `queue-headroom: ${WORKERS} workers in ${PROCS} processes, ${GPU_MS} ms per job; warm-up ${WARMUP_S} s, measuring ${DURATION_S} s\n`,
  );

  // CPU over the measured window only.
  await sleep(windowStart - Date.now());
  const pids = () => backendPids((text) => sql.raw<{ pid: number }>(text).execute(db));
  const probe = {
    pids: Object.fromEntries(mine.map((c, i) => [`worker_proc_${i}`, c.pid])),
    commands: ['postgres'],
  };
  const before: CpuSnapshot = cpuSnapshot({ ...probe, groups: { postgres_this_db: await pids() } });
  await sleep(stopAt - Date.now());
  const after = cpuSnapshot({ ...probe, groups: { postgres_this_db: await pids() } });
  const reports = await Promise.all(results);
  await Promise.all(mine.map((c) => (c.exitCode === null ? once(c, 'exit') : undefined)));

  const inWindow = (t: number) => t >= windowStart && t < stopAt;
  const completions = reports.flatMap((r) => r.completions);
  const measured = completions.filter(([t]) => inWindow(t)).length;
  const pickups = reports
    .flatMap((r) => r.pickups)
    .filter(([t]) => inWindow(t))
    .map(([, ms]) => ms);
  const calls = reports.flatMap((r) => r.calls);
  const ids = completions.map(([, id]) => id);
  const { rows: counts } = await sql<{ succeeded: number; queued: number; open_jobs: number }>`
    select
      (select count(*)::int from generations where status = 'succeeded') as succeeded,
      (select count(*)::int from generations where status = 'queued') as queued,
      (select count(*)::int from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
        where name = ${GENERATION_QUEUE} and state in ('created', 'retry')) as open_jobs`.execute(db);
  const cpu = cpuBetween(before, after);
  return {
    rate: round(measured / DURATION_S, 1),
    completionsInWindow: measured,
    completionsTotal: completions.length,
    pickups,
    calls,
    runTwice: ids.length - new Set(ids).size,
    errors: reports.flatMap((r) => r.errors),
    count: counts[0] ?? { succeeded: 0, queued: 0, open_jobs: 0 },
    cpu,
    workerCores: round(
      Object.entries(cpu)
        .filter(([k]) => k.startsWith('worker_proc_'))
        .reduce((a, [, v]) => a + v, 0),
      2,
    ),
    emptyFetches: reports.reduce((a, r) => a + r.emptyFetches, 0),
    wakeups: reports.reduce((a, r) => a + r.wakeups, 0),
    callStats(i) {
      const values = calls.map((c) => c[i]);
      return { p50: round(percentile(values, 50), 2), p95: round(percentile(values, 95), 2) };
    },
  };
}
