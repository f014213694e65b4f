// Queue headroom benchmark: can one Postgres feed 100 GPU workers? 100 simulated workers (split
// over a few processes, test/bench/queue-headroom.worker.ts) run the project's queue contract
// against a backlog created through the real API (POST /v1/generations). The workers are
// simulated because this machine has no 100 GPUs: each fetches, claims and completes exactly as
// the real worker's queue loop does, with a sleep in place of the model.
// Each job holds its worker for 240 ms of simulated GPU time, so the ceiling is 100/0.24 =
// 416.7 jobs/s; what the queue costs shows as the gap to it.
//   goals: sustained ≥ 400 jobs/s; pickup latency p95 ≤ 50 ms (a worker becoming free → it
//   holding its next job); no job run twice.
//   BENCH_WORKERS (100), BENCH_WORKER_PROCS (2), BENCH_GPU_MS (240), BENCH_DURATION (s, 20),
//   BENCH_WARMUP (s, 3), BENCH_BOSS_POOL (10 per process), BENCH_DB_POOL (5 per process)
import { type ChildProcess, spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { once } from 'node:events';
import { sql } from 'kysely';
import { startService } from '../../bin/local/service-process.ts';
import { createApiKey } from '../../db/api-keys.repository.ts';
import {
  createBoss,
  DEFAULT_QUEUE_POLICY,
  ensureGenerationQueue,
  generationQueue,
  PGBOSS_SCHEMA,
} from '../../db/queue.ts';
import { API_LISTENING } from '../../shared/log-events.ts';
import { createTestDatabase } from '../harness/database.ts';
import { DEMO_MODEL_ID, registerDemoModel } from '../harness/models.ts';
import {
  type BenchRow,
  backendPids,
  type CpuSnapshot,
  cpuBetween,
  cpuSnapshot,
  machineDescription,
  percentile,
  REPO_ROOT,
  round,
  SHARED_CORES_CAVEAT,
  sleep,
  writeResult,
} from './bench-common.ts';
import type { WorkerProcessResult } from './queue-headroom.worker.ts';

// The demo model's queue: every generation here runs on it.
const GENERATION_QUEUE = generationQueue(DEMO_MODEL_ID);

const WORKERS = Number(process.env.BENCH_WORKERS ?? 100);
const PROCS = Number(process.env.BENCH_WORKER_PROCS ?? 2);
const GPU_MS = Number(process.env.BENCH_GPU_MS ?? 240);
const DURATION_S = Number(process.env.BENCH_DURATION ?? 20);
const WARMUP_S = Number(process.env.BENCH_WARMUP ?? 3);
const BOSS_POOL = Number(process.env.BENCH_BOSS_POOL ?? 10);
const DB_POOL = Number(process.env.BENCH_DB_POOL ?? 5);

const CEILING = WORKERS / (GPU_MS / 1000);
const RATE_GOAL = 400;
const PICKUP_P95_GOAL_MS = 50;
// Enough that the backlog outlasts the run at the ceiling, with a margin.
const BACKLOG = Math.ceil((CEILING * (WARMUP_S + DURATION_S + 5) * 1.2) / 1000) * 1000;

const database = await createTestDatabase('bench_queue');
const { db } = database;
const boss = createBoss(database.url, { supervise: false, applicationName: 'easel-bench-producer' });
const children: ChildProcess[] = [];
let cleaning: Promise<void> | undefined;
const cleanup = () =>
  (cleaning ??= (async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    await boss.stop({ graceful: false }).catch(() => {});
    await database.drop();
  })());
// Interrupted (Ctrl-C, the runner killed): still stop the workers and drop the database.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void cleanup().finally(() => process.exit(130)));
}
try {
  const { rows: settings } = await sql<{ v: string; max: number; used: number }>`
    select current_setting('server_version') as v, current_setting('max_connections')::int as max,
      (select count(*)::int from pg_stat_activity) as used`.execute(db);
  const setting = settings[0];
  const machine = machineDescription(`PostgreSQL ${setting?.v ?? '?'}`);
  const wanted = PROCS * (BOSS_POOL + DB_POOL + 2) + 10;
  if (setting && setting.used + wanted > setting.max) {
    throw new Error(
      `Postgres has ${setting.used} of max_connections=${setting.max} in use; this bench needs about ${wanted} more`,
    );
  }

  await boss.start();
  // As the worker creates it (with its policy: retries, heartbeat, notify).
  await ensureGenerationQueue(boss, DEMO_MODEL_ID, DEFAULT_QUEUE_POLICY);
  const { key } = await createApiKey(db, { name: 'bench' });
  // The model the creates run on, as its worker would announce it.
  await registerDemoModel(db);

  // The backlog, created the way users create generations: POST /v1/generations on the real
  // API process (32 requests in flight), which writes rows and jobs in its batched transactions.
  process.stderr.write(`queue-headroom: creating ${BACKLOG} generations through the API\n`);
  const api = await startService({
    name: 'api',
    script: 'api/main.ts',
    env: {
      ...process.env,
      DATABASE_URL: database.url,
      // Creates never touch the object store; nothing here reads an image.
      S3_ENDPOINT: 'http://127.0.0.1:9',
      PORT: '0',
      // info: the ready line the bench waits for is an info line.
      LOG_LEVEL: 'info',
      MAX_IN_FLIGHT_PER_KEY: String(BACKLOG),
      MAX_QUEUED: String(BACKLOG),
    },
    readyMsg: API_LISTENING,
  });
  const fillStart = performance.now();
  try {
    const url = `${String(api.ready.url)}/v1/generations`;
    let next = 0;
    const creator = async () => {
      while (next < BACKLOG) {
        next++;
        const res = await fetch(url, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            prompt: 'a lighthouse on a cliff at dawn, oil painting',
            negative_prompt: 'blurry',
            width: 512,
            height: 512,
            steps: 25,
            seed: randomInt(0, 2 ** 32),
          }),
        });
        if (res.status !== 202) throw new Error(`create answered ${res.status}: ${await res.text()}`);
        await res.arrayBuffer();
      }
    };
    await Promise.all(Array.from({ length: 32 }, creator));
  } finally {
    await api.stop();
  }
  const fillSeconds = (performance.now() - fillStart) / 1000;
  await sql`analyze`.execute(db);

  // The worker processes, each with its own pg-boss and pool.
  const perProc = Array.from(
    { length: PROCS },
    (_, i) => Math.floor(WORKERS / PROCS) + (i < WORKERS % PROCS ? 1 : 0),
  );
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
  for (const child of children) child.send({ type: 'start', startAt, stopAt });
  process.stderr.write(
    `queue-headroom: ${WORKERS} workers in ${PROCS} processes, ${GPU_MS} ms per job; warm-up ${WARMUP_S} s, measuring ${DURATION_S} s\n`,
  );

  // CPU over the measured window only.
  await sleep(windowStart - Date.now());
  const pids = () => backendPids((text) => sql.raw<{ pid: number }>(text).execute(db));
  const probe = {
    pids: Object.fromEntries(children.map((c, i) => [`worker_proc_${i}`, c.pid])),
    commands: ['postgres'],
  };
  const before: CpuSnapshot = cpuSnapshot({ ...probe, groups: { postgres_this_db: await pids() } });
  await sleep(stopAt - Date.now());
  const after = cpuSnapshot({ ...probe, groups: { postgres_this_db: await pids() } });
  const reports = await Promise.all(results);
  await Promise.all(children.map((c) => (c.exitCode === null ? once(c, 'exit') : undefined)));

  const inWindow = (t: number) => t >= windowStart && t < stopAt;
  const completions = reports.flatMap((r) => r.completions);
  const measured = completions.filter(([t]) => inWindow(t)).length;
  const rate = round(measured / DURATION_S, 1);
  const pickups = reports
    .flatMap((r) => r.pickups)
    .filter(([t]) => inWindow(t))
    .map(([, ms]) => ms);
  const calls = reports.flatMap((r) => r.calls);
  const ids = completions.map(([, id]) => id);
  const runTwice = ids.length - new Set(ids).size;
  const { rows: counts } = await sql<{ succeeded: number; queued: number; open_jobs: number }>`
    select
      (select count(*)::int from generations where status = 'succeeded') as succeeded,
      (select count(*)::int from generations where status = 'queued') as queued,
      (select count(*)::int from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
        where name = ${GENERATION_QUEUE} and state in ('created', 'retry')) as open_jobs`.execute(db);
  const count = counts[0] ?? { succeeded: 0, queued: 0, open_jobs: 0 };
  const errors = reports.flatMap((r) => r.errors);
  const cpu = cpuBetween(before, after);
  const workerCores = round(
    Object.entries(cpu)
      .filter(([k]) => k.startsWith('worker_proc_'))
      .reduce((a, [, v]) => a + v, 0),
    2,
  );
  const pickupP95 = round(percentile(pickups, 95), 2);
  const callStats = (i: 0 | 1 | 2 | 3) => {
    const values = calls.map((c) => c[i]);
    return { p50: round(percentile(values, 50), 2), p95: round(percentile(values, 95), 2) };
  };

  const rows: BenchRow[] = [
    {
      metric: `sustained throughput, ${WORKERS} workers × ${GPU_MS} ms jobs`,
      value: rate,
      unit: 'jobs/s',
      goal: `≥ ${RATE_GOAL}`,
      met: rate >= RATE_GOAL,
      note: `ceiling ${round(CEILING, 1)}`,
    },
    { metric: 'throughput ÷ ceiling', value: round(rate / CEILING, 3), unit: '' },
    { metric: 'pickup latency p50', value: round(percentile(pickups, 50), 2), unit: 'ms' },
    {
      metric: 'pickup latency p95',
      value: pickupP95,
      unit: 'ms',
      goal: `≤ ${PICKUP_P95_GOAL_MS} ms`,
      met: pickupP95 <= PICKUP_P95_GOAL_MS,
    },
    { metric: 'pickup latency p99', value: round(percentile(pickups, 99), 2), unit: 'ms' },
    {
      metric: 'jobs run twice + worker errors',
      value: runTwice + errors.length,
      unit: '',
      goal: '0',
      met: runTwice === 0 && errors.length === 0 && count.succeeded === completions.length,
    },
  ];
  if (cpu.postgres_this_db_cores !== undefined) {
    rows.push({ metric: 'Postgres CPU (this database)', value: cpu.postgres_this_db_cores, unit: 'cores' });
  }
  const backlogLeft = count.open_jobs;
  const setup = `${WORKERS} simulated workers in ${PROCS} processes (pg-boss pool ${BOSS_POOL} + Kysely pool ${DB_POOL} each), ${GPU_MS} ms simulated GPU time per job, backlog ${BACKLOG} pre-filled, ${DURATION_S} s measured after ${WARMUP_S} s; ${SHARED_CORES_CAVEAT}`;
  console.log(`\nQueue headroom — ${machine}\n${setup}\n`);
  console.log(
    '| jobs/s (goal ≥ 400) | ceiling | pickup p50 / p95 / p99 ms (p95 goal ≤ 50) | fetch / update / complete p50 ms | Postgres cores (this db / all) | worker cores | machine busy |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  const [f, u, c] = [callStats(0), callStats(1), callStats(2)];
  console.log(
    `| ${rate} | ${round(CEILING, 1)} | ${rows[2]?.value} / ${pickupP95} / ${rows[4]?.value} | ${f.p50} / ${u.p50} / ${c.p50} | ${cpu.postgres_this_db_cores ?? '?'} / ${cpu.postgres_cores ?? '?'} | ${workerCores} | ${cpu.machine_busy_share ?? '?'} |`,
  );
  console.log(
    `\njobs run twice: ${runTwice}; worker errors: ${errors.length}; succeeded rows ${count.succeeded} = completions ${completions.length}: ${count.succeeded === completions.length}; backlog left ${backlogLeft}${backlogLeft === 0 ? ' (RAN OUT: the rate is a lower bound)' : ''}`,
  );
  const slept = callStats(3);
  console.log(
    `simulated GPU wait as slept: p50 ${slept.p50} ms, p95 ${slept.p95} ms for ${GPU_MS} ms (the timer's overshoot counts against the queue)`,
  );
  if (errors.length) console.log(`first errors:\n  ${errors.slice(0, 5).join('\n  ')}`);
  const path = await writeResult({
    name: 'queue-headroom',
    machine,
    date: new Date().toISOString(),
    rows,
    details: {
      setup,
      workers: WORKERS,
      processes: PROCS,
      gpu_ms: GPU_MS,
      duration_s: DURATION_S,
      warmup_s: WARMUP_S,
      backlog: BACKLOG,
      backlog_fill_jobs_per_s: round(BACKLOG / fillSeconds, 0),
      backlog_left: backlogLeft,
      completions_total: completions.length,
      completions_in_window: measured,
      pickups_in_window: pickups.length,
      empty_fetches: reports.reduce((a, r) => a + r.emptyFetches, 0),
      notify_wakeups: reports.reduce((a, r) => a + r.wakeups, 0),
      call_ms: { fetch: f, update: u, complete: c },
      // A timer overshoots its delay a little; that overshoot counts against the queue here.
      simulated_gpu_ms: slept,
      cycle_overhead_ms_p50: round(
        percentile(
          calls.map((x) => x[0] + x[1] + x[2] + x[3] - GPU_MS),
          50,
        ),
        2,
      ),
      cpu: { ...cpu, worker_processes_cores: workerCores },
      errors: errors.slice(0, 20),
    },
  });
  console.log(`\nwritten: ${path}`);
} finally {
  await cleanup();
}
