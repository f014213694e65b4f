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
// The worker processes and the measured window are in queue-headroom.common.ts, which the fairness
// bench runs too (over a FIFO backlog and a fair one).
import type { ChildProcess } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { sql } from 'kysely';
import { startService } from '../../bin/local/service-process.ts';
import { createApiKey } from '../../db/api-keys.repository.ts';
import { createBoss, DEFAULT_QUEUE_POLICY, ensureGenerationQueue } from '../../db/queue.ts';
import { API_LISTENING } from '../../shared/log-events.ts';
import { createTestDatabase } from '../harness/database.ts';
import { DEMO_MODEL_ID, registerDemoModel } from '../harness/models.ts';
import { type BenchRow, percentile, round, SHARED_CORES_CAVEAT, writeResult } from './bench-common.ts';
import {
  BACKLOG,
  BOSS_POOL,
  CEILING,
  DB_POOL,
  DURATION_S,
  GPU_MS,
  headroomMachine,
  PICKUP_P95_GOAL_MS,
  PROCS,
  RATE_GOAL,
  runSimulatedWorkers,
  WARMUP_S,
  WORKERS,
} from './queue-headroom.common.ts';

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
  const machine = await headroomMachine(db);

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

  const run = await runSimulatedWorkers(database, children);
  const { rate, pickups, calls, runTwice, count, errors, cpu, workerCores } = run;
  const measured = run.completionsInWindow;
  const pickupP95 = round(percentile(pickups, 95), 2);
  const callStats = run.callStats;

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
      met: runTwice === 0 && errors.length === 0 && count.succeeded === run.completionsTotal,
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
    `\njobs run twice: ${runTwice}; worker errors: ${errors.length}; succeeded rows ${count.succeeded} = completions ${run.completionsTotal}: ${count.succeeded === run.completionsTotal}; backlog left ${backlogLeft}${backlogLeft === 0 ? ' (RAN OUT: the rate is a lower bound)' : ''}`,
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
      completions_total: run.completionsTotal,
      completions_in_window: measured,
      pickups_in_window: pickups.length,
      empty_fetches: run.emptyFetches,
      notify_wakeups: run.wakeups,
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
