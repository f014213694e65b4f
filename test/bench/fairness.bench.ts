// Fairness benchmark: what fair turns between API keys (db/fair-queue.ts) give and what they cost.
//   1. The wait of a single job from key B behind a 1,000-job backlog of key A, in jobs and in
//      milliseconds, on the user's path: POST /v1/generations on the real API process, one real
//      GPU worker process (the demo model, small jobs) taking the jobs from pg-boss. A's backlog is
//      in place before the worker starts (as after a burst); once the worker is busy, B creates one
//      job, waits for it to finish, and does it again (BENCH_FAIR_PROBES times). Counted per probe:
//      A's jobs that started (generations.started_at, the worker's claim) after B's 202 and no
//      later than B's own start. First come, first served would put B behind every A job waiting.
//      goal: at most workers × 2 of A's jobs (the one the worker holds prefetched, then the head).
//   2. The cost of fair ordering on the queue-headroom figure: queue-headroom.common.ts's 100
//      simulated workers run twice in this bench, on a fresh database each time: over a backlog
//      written the old way (priority 0: first in, first out; one key) and over one written through
//      the fair path the API takes (lockForCreate, then enqueueFairly: starts, rows and jobs with the
//      priorities; several keys with mixed weights). Both backlogs are written directly in
//      transactions of 100 (the API's batch size), so the two differ only in their priorities.
//      goal: fair ÷ FIFO jobs/s ≥ 0.9.
//   BENCH_FAIR_BACKLOG (1000), BENCH_FAIR_PROBES (5), and queue-headroom.common.ts's settings.
import type { ChildProcess } from 'node:child_process';
import { randomInt, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { type ServiceProcess, startService } from '../../bin/local/service-process.ts';
import { type CreatedApiKey, createApiKey } from '../../db/api-keys.repository.ts';
import { enqueueFairly, lockForCreate, rebaseFairQueue } from '../../db/fair-queue.ts';
import { insertGenerations } from '../../db/generations.repository.ts';
import {
  createBoss,
  DEFAULT_QUEUE_POLICY,
  enqueueGenerations,
  ensureGenerationQueue,
  PGBOSS_SCHEMA,
} from '../../db/queue.ts';
import type { NewGeneration } from '../../db/types.ts';
import { GENERATION_STARTED, GENERATION_SUCCEEDED } from '../../shared/log-events.ts';
import { createTestDatabase, type TestDatabase } from '../harness/database.ts';
import { DEMO_MODEL_ID, registerDemoModel } from '../harness/models.ts';
import { startS3ServerProcess } from '../harness/s3-server.ts';
import {
  type BenchRow,
  markdownTable,
  percentile,
  round,
  SHARED_CORES_CAVEAT,
  writeResult,
} from './bench-common.ts';
import {
  CEILING,
  DURATION_S,
  GENERATION_QUEUE,
  GPU_MS,
  BACKLOG as HEADROOM_BACKLOG,
  type HeadroomRun,
  headroomMachine,
  PROCS,
  runSimulatedWorkers,
  WORKERS as SIMULATED_WORKERS,
  WARMUP_S,
} from './queue-headroom.common.ts';

const A_BACKLOG = Number(process.env.BENCH_FAIR_BACKLOG ?? 1000);
const PROBES = Number(process.env.BENCH_FAIR_PROBES ?? 5);
/** Real worker processes in part 1: one, as on a single GPU. */
const WORKERS = 1;
const WAIT_GOAL_JOBS = WORKERS * 2;
const RATIO_GOAL = 0.9;
/** Part 1's jobs: the demo model's smallest, so the figure in jobs is reached in seconds. */
const SMALL_JOB = { width: 64, height: 64, steps: 1 };
/** Part 2's keys on the fair backlog and their weights (api_keys.weight). */
const FAIR_WEIGHTS = [1, 1, 2, 3, 5, 10];
/** Rows and jobs per transaction when a backlog is written directly: the API's MAX_BATCH. */
const FILL_BATCH = 100;
/** When the statistics are first gathered while a backlog is written (see fillBacklog). */
const FILL_ANALYZE_AFTER = 1_000;

const children: ChildProcess[] = [];
const databases: TestDatabase[] = [];
const services: ServiceProcess[] = [];
let s3: Awaited<ReturnType<typeof startS3ServerProcess>> | undefined;
let work: string | undefined;
let cleaning: Promise<void> | undefined;
const cleanup = () =>
  (cleaning ??= (async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
    await Promise.allSettled(services.map((service) => service.stop()));
    await s3?.stop();
    await Promise.allSettled(databases.map((database) => database.drop()));
    if (work) await rm(work, { recursive: true, force: true });
  })());
// Interrupted (Ctrl-C, the runner killed): still stop the processes and drop the databases.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void cleanup().finally(() => process.exit(130)));
}

async function freshDatabase(label: string): Promise<TestDatabase> {
  const database = await createTestDatabase(label);
  databases.push(database);
  return database;
}

async function dropDatabase(database: TestDatabase): Promise<void> {
  databases.splice(databases.indexOf(database), 1);
  await database.drop();
}

// --- Part 1: B's single job behind A's backlog, through the API and a real worker ---

interface Probe {
  /** A's jobs not yet started when B's 202 arrived. */
  waitingAtAccept: number;
  /** A's jobs that started between B's 202 and B's start. */
  aStartedBetween: number;
  toStartMs: number;
  toSuccessMs: number;
}

interface WaitResult {
  probes: Probe[];
  /** Mean time between two starts on the worker (its pace on these jobs). */
  msPerJob: number;
  createSeconds: number;
}

async function measureWait(): Promise<WaitResult> {
  const database = await freshDatabase('bench_fair_wait');
  s3 = await startS3ServerProcess();
  work = await mkdtemp(join(tmpdir(), 'easel-bench-fair-'));
  await registerDemoModel(database.db);
  const cap = A_BACKLOG + PROBES + 10;
  const keyA = await createApiKey(database.db, { name: 'bench-a', maxInFlight: cap });
  const keyB = await createApiKey(database.db, { name: 'bench-b', maxInFlight: cap });
  const env = {
    ...process.env,
    DATABASE_URL: database.url,
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: 'easel-bench-fair',
    EASEL_DATA_DIR: work,
    // info: the ready lines and the generation lines this bench reads are info lines.
    LOG_LEVEL: 'info',
  };
  const api = await startService({ name: 'api', env: { ...env, PORT: '0', MAX_QUEUED: String(cap) } });
  services.push(api);
  const url = `${String(api.ready.url)}/v1/generations`;
  const create = async (key: CreatedApiKey, prompt: string) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt, ...SMALL_JOB, seed: randomInt(0, 2 ** 32) }),
    });
    const acceptedAt = Date.now();
    if (res.status !== 202) throw new Error(`create answered ${res.status}: ${await res.text()}`);
    const body = (await res.json()) as { id: string };
    return { id: body.id, acceptedAt };
  };

  // A's backlog, 32 creates in flight (A's own order does not matter here; the test checks it).
  process.stderr.write(`fairness: key A creates ${A_BACKLOG} generations through the API\n`);
  const createStart = performance.now();
  const aIds = new Set<string>();
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < A_BACKLOG) {
        next++;
        aIds.add((await create(keyA, 'a backlog of key A')).id);
      }
    }),
  );
  const createSeconds = (performance.now() - createStart) / 1000;

  // The worker's generation lines, to wait on (the figures come from the rows, below).
  let aStarted = 0;
  const succeeded = new Set<string>();
  const lineWaiters = new Set<() => void>();
  /** Resolves once `done()` holds, re-checked on each generation line the worker writes. */
  const until = (done: () => boolean) =>
    new Promise<void>((resolve) => {
      const check = () => {
        if (!done()) return;
        lineWaiters.delete(check);
        resolve();
      };
      lineWaiters.add(check);
      check();
    });
  const worker = await startService({
    name: 'worker',
    env: { ...env, WORKER_ID: 'bench-fair', WARMUP_SIZE: '64' },
    onLine(line) {
      if (!line.includes(GENERATION_STARTED) && !line.includes(GENERATION_SUCCEEDED)) return;
      const record = JSON.parse(line) as { msg: string; generation_id: string };
      if (record.msg === GENERATION_STARTED && aIds.has(record.generation_id)) aStarted++;
      else if (record.msg === GENERATION_SUCCEEDED) succeeded.add(record.generation_id);
      else return;
      for (const check of [...lineWaiters]) check();
    },
  });
  services.push(worker);
  // Busy: a few of A's jobs started, so the worker holds one denoising and one prefetched.
  await until(() => aStarted >= 3);

  const sent: { id: string; acceptedAt: number }[] = [];
  for (let i = 0; i < PROBES; i++) {
    const b = await create(keyB, `B's single job ${i}`);
    sent.push(b);
    await until(() => succeeded.has(b.id));
  }
  // The rest of A's backlog is not needed: stop the worker (it settles what it holds, so every
  // claim it made has committed) and the API.
  await worker.stop();
  await api.stop();

  // A generation starts when the worker claims it (started_at: the claim's now(), as the resource
  // reports it), on the host clock the 202 times were read from. The worker's 'generation started'
  // line comes after the claim commits, which for these tiny jobs can be after a 202 that came
  // later than the start itself, so the lines' times would count a job already running.
  const rows = await database.db
    .selectFrom('generations')
    .select(['id', 'api_key_id', 'started_at', 'finished_at'])
    .where('started_at', 'is not', null)
    .execute();
  const startsA = rows
    .filter((row) => row.api_key_id === keyA.apiKey.id)
    .map((row) => new Date(row.started_at as Date).getTime());
  const byId = new Map(rows.map((row) => [row.id, row]));
  const probes = sent.map((b): Probe => {
    const row = byId.get(b.id);
    if (!row?.started_at || !row.finished_at) throw new Error(`B's ${b.id} did not run to the end`);
    const startedAt = new Date(row.started_at).getTime();
    return {
      waitingAtAccept: A_BACKLOG - startsA.filter((t) => t < b.acceptedAt).length,
      aStartedBetween: startsA.filter((t) => t >= b.acceptedAt && t <= startedAt).length,
      toStartMs: startedAt - b.acceptedAt,
      toSuccessMs: new Date(row.finished_at).getTime() - b.acceptedAt,
    };
  });
  // The worker's pace: its starts (A's, and B's among them) were back to back while it ran.
  const all = rows.map((row) => new Date(row.started_at as Date).getTime());
  const msPerJob = (Math.max(...all) - Math.min(...all)) / Math.max(1, all.length - 1);
  await dropDatabase(database);
  return { probes, msPerJob, createSeconds };
}

// --- Part 2: the queue-headroom figure over a FIFO backlog and over a fair one ---

type FillMode = 'fifo' | 'fair';

interface Fill {
  jobsPerSecond: number;
  keys: number;
  /** Distinct priorities in the backlog: 1 for FIFO; for the fair one, about one per job. */
  distinctPriorities: number;
}

/** The backlog's rows as the API writes them (a 512², 25-step SD 1.5 job each). */
function backlogRow(apiKeyId: string): NewGeneration & { id: string } {
  return {
    id: randomUUID(),
    api_key_id: apiKeyId,
    model: DEMO_MODEL_ID,
    prompt: 'a lighthouse on a cliff at dawn, oil painting',
    negative_prompt: 'blurry',
    width: 512,
    height: 512,
    steps: 25,
    guidance_scale: 7.5,
    num_images: 1,
    seed: randomInt(0, 2 ** 32),
  };
}

async function fillBacklog(database: TestDatabase, mode: FillMode): Promise<Fill> {
  const { db } = database;
  const boss = createBoss(database.url, { supervise: false, applicationName: 'easel-bench-producer' });
  await boss.start();
  try {
    // As the worker creates it (with its policy: retries, heartbeat, notify).
    await ensureGenerationQueue(boss, DEMO_MODEL_ID, DEFAULT_QUEUE_POLICY);
    await registerDemoModel(db);
    const weights = mode === 'fifo' ? [1] : FAIR_WEIGHTS;
    const keys = await Promise.all(
      weights.map((weight, i) => createApiKey(db, { name: `bench-${mode}-${i}`, weight })),
    );
    process.stderr.write(
      `fairness: writing a ${mode} backlog of ${HEADROOM_BACKLOG} (${keys.length} key(s), batches of ${FILL_BATCH})\n`,
    );
    const started = performance.now();
    for (let written = 0; written < HEADROOM_BACKLOG; written += FILL_BATCH) {
      const batch = Array.from({ length: Math.min(FILL_BATCH, HEADROOM_BACKLOG - written) }, () => {
        // Keys in random turns, as independent clients' creates arrive.
        const key = keys[randomInt(0, keys.length)] as CreatedApiKey;
        return { key: key.apiKey, row: backlogRow(key.apiKey.id) };
      });
      const rebase = await db.transaction().execute(async (trx) => {
        if (mode === 'fifo') {
          // The old way: rows and jobs with pg-boss's default priority 0, fetched in created order.
          const rows = await insertGenerations(
            trx,
            batch.map((b) => b.row),
          );
          await enqueueGenerations(boss, trx, rows);
          return [];
        }
        // The API's create path (api/generation-intake.ts) less its admission counts.
        await lockForCreate(
          trx,
          batch.map((b) => b.key.id),
          batch.map((b) => b.row.model ?? null),
        );
        const fair = await enqueueFairly(
          trx,
          boss,
          batch.map((b) => ({ row: b.row, apiKeyId: b.key.id, weight: b.key.weight })),
        );
        return fair.rebase;
      });
      for (const queue of rebase) await rebaseFairQueue(db, queue);
      // A fresh database has no statistics, and the create path's plans on an unanalyzed table
      // cost a little more with every batch; a live database's autovacuum has analyzed it.
      if (written + FILL_BATCH === FILL_ANALYZE_AFTER) await sql`analyze`.execute(db);
    }
    const seconds = (performance.now() - started) / 1000;
    await sql`analyze`.execute(db);
    const { rows } = await sql<{ n: number }>`
      select count(distinct priority)::int as n from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
      where name = ${GENERATION_QUEUE}`.execute(db);
    return {
      jobsPerSecond: round(HEADROOM_BACKLOG / seconds, 0),
      keys: keys.length,
      distinctPriorities: rows[0]?.n ?? 0,
    };
  } finally {
    await boss.stop({ graceful: false });
  }
}

async function measureHeadroom(mode: FillMode): Promise<{ fill: Fill; run: HeadroomRun; machine: string }> {
  const database = await freshDatabase(`bench_fair_${mode}`);
  const machine = await headroomMachine(database.db);
  const fill = await fillBacklog(database, mode);
  const run = await runSimulatedWorkers(database, children);
  await dropDatabase(database);
  return { fill, run, machine };
}

// --- The bench ---

try {
  const wait = await measureWait();
  // ABBA (FIFO, fair, fair, FIFO): a drift of the shared machine over the four runs cancels out of
  // the ratio, which compares the two modes' summed throughputs.
  const runs: Record<FillMode, Awaited<ReturnType<typeof measureHeadroom>>[]> = { fifo: [], fair: [] };
  for (const mode of ['fifo', 'fair', 'fair', 'fifo'] as const) runs[mode].push(await measureHeadroom(mode));
  const [fifo, fifoAgain] = runs.fifo as [
    Awaited<ReturnType<typeof measureHeadroom>>,
    Awaited<ReturnType<typeof measureHeadroom>>,
  ];
  const [fair, fairAgain] = runs.fair as [
    Awaited<ReturnType<typeof measureHeadroom>>,
    Awaited<ReturnType<typeof measureHeadroom>>,
  ];
  const meanRate = (a: typeof fifo, b: typeof fifo) => round((a.run.rate + b.run.rate) / 2, 1);

  const { probes } = wait;
  const first = probes[0];
  const worstJobs = Math.max(...probes.map((p) => p.aStartedBetween));
  const waiting = first?.waitingAtAccept ?? Number.NaN;
  const fifoWaitMs = waiting * wait.msPerJob;
  const ratio = round((fair.run.rate + fairAgain.run.rate) / (fifo.run.rate + fifoAgain.run.rate), 3);
  const pickupP95 = (run: HeadroomRun) => round(percentile(run.pickups, 95), 2);
  const faults = (run: HeadroomRun) =>
    run.runTwice + run.errors.length + (run.count.succeeded === run.completionsTotal ? 0 : 1);

  const rows: BenchRow[] = [
    {
      metric: `B's single job behind a ${A_BACKLOG}-job backlog of A: A's jobs started between B's 202 and B's start`,
      value: worstJobs,
      unit: 'jobs',
      goal: `≤ ${WAIT_GOAL_JOBS} (workers × 2)`,
      met: worstJobs <= WAIT_GOAL_JOBS,
      note: `most of ${probes.length} probes (${probes.map((p) => p.aStartedBetween).join(', ')}); first come, first served: ${waiting}`,
    },
    {
      metric: "B's single job: B's 202 → B started, p50",
      value: round(
        percentile(
          probes.map((p) => p.toStartMs),
          50,
        ),
        1,
      ),
      unit: 'ms',
      note: `max ${round(Math.max(...probes.map((p) => p.toStartMs)), 1)} ms; first come, first served ≈ ${round(fifoWaitMs / 1000, 1)} s (${waiting} jobs × ${round(wait.msPerJob, 1)} ms, one worker, ${SMALL_JOB.width}² ${SMALL_JOB.steps}-step demo jobs)`,
    },
    {
      metric: "B's single job: B's 202 → B succeeded, p50",
      value: round(
        percentile(
          probes.map((p) => p.toSuccessMs),
          50,
        ),
        1,
      ),
      unit: 'ms',
      note: `max ${round(Math.max(...probes.map((p) => p.toSuccessMs)), 1)} ms`,
    },
    {
      metric: `queue headroom over a FIFO backlog (priority 0, one key), ${SIMULATED_WORKERS} workers × ${GPU_MS} ms`,
      value: meanRate(fifo, fifoAgain),
      unit: 'jobs/s',
      note: `mean of 2 runs (${fifo.run.rate}, ${fifoAgain.run.rate}); ceiling ${round(CEILING, 1)}; pickup p95 ${pickupP95(fifo.run)}, ${pickupP95(fifoAgain.run)} ms`,
    },
    {
      metric: `queue headroom over a fair backlog (${fair.fill.keys} keys, weights ${FAIR_WEIGHTS.join('/')})`,
      value: meanRate(fair, fairAgain),
      unit: 'jobs/s',
      note: `mean of 2 runs (${fair.run.rate}, ${fairAgain.run.rate}); ceiling ${round(CEILING, 1)}; pickup p95 ${pickupP95(fair.run)}, ${pickupP95(fairAgain.run)} ms`,
    },
    {
      metric: 'queue headroom: fair ÷ FIFO (runs in the order FIFO, fair, fair, FIFO)',
      value: ratio,
      unit: '',
      goal: `≥ ${RATIO_GOAL}`,
      met: ratio >= RATIO_GOAL,
    },
    {
      metric: 'queue headroom: jobs run twice + worker errors (all four runs)',
      value: [fifo, fifoAgain, fair, fairAgain].reduce((n, r) => n + faults(r.run), 0),
      unit: '',
      goal: '0',
      met: [fifo, fifoAgain, fair, fairAgain].every((r) => faults(r.run) === 0),
    },
    {
      metric: 'backlog written directly in batches of 100: fair ÷ FIFO jobs/s',
      value: round(fair.fill.jobsPerSecond / fifo.fill.jobsPerSecond, 3),
      unit: '',
      note: `FIFO ${fifo.fill.jobsPerSecond} jobs/s, fair ${fair.fill.jobsPerSecond} jobs/s: the fair path's two statements and locks per batch`,
    },
  ];

  const machine = fifo.machine;
  const setup =
    `part 1: one API and one worker process, ${A_BACKLOG} of A's jobs created through the API before the worker started, ` +
    `${probes.length} probes of B's single job; part 2: ${SIMULATED_WORKERS} simulated workers in ${PROCS} processes, ${GPU_MS} ms per job, ` +
    `backlog ${HEADROOM_BACKLOG}, ${DURATION_S} s measured after ${WARMUP_S} s, runs FIFO, fair, fair, FIFO; ${SHARED_CORES_CAVEAT}`;
  console.log(`\nFairness — ${machine}\n${setup}\n`);
  console.log("| probe | A waiting at B's 202 | A started before B | 202 → start ms | 202 → success ms |");
  console.log('| --- | --- | --- | --- | --- |');
  probes.forEach((p, i) => {
    console.log(
      `| ${i + 1} | ${p.waitingAtAccept} | ${p.aStartedBetween} | ${round(p.toStartMs, 1)} | ${round(p.toSuccessMs, 1)} |`,
    );
  });
  console.log(
    `\nFirst come, first served, B would have waited for the ${waiting} jobs ahead: ≈ ${round(fifoWaitMs / 1000, 1)} s at this worker's ${round(wait.msPerJob, 1)} ms per job.\n`,
  );
  console.log(
    '| backlog | jobs/s | pickup p50 / p95 ms | fetch p50 ms | backlog written, jobs/s | priorities |',
  );
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const [name, r] of [
    ['FIFO', fifo],
    ['fair', fair],
    ['fair', fairAgain],
    ['FIFO', fifoAgain],
  ] as const) {
    console.log(
      `| ${name} | ${r.run.rate} | ${round(percentile(r.run.pickups, 50), 2)} / ${pickupP95(r.run)} | ${r.run.callStats(0).p50} | ${r.fill.jobsPerSecond} | ${r.fill.distinctPriorities} |`,
    );
  }
  console.log(`\nfair ÷ FIFO: ${ratio} (goal ≥ ${RATIO_GOAL})\n`);
  const result = {
    name: 'fairness',
    machine,
    date: new Date().toISOString(),
    rows,
    details: {
      setup,
      wait: {
        backlog: A_BACKLOG,
        job: SMALL_JOB,
        workers: WORKERS,
        create_seconds: round(wait.createSeconds, 2),
        ms_per_job: round(wait.msPerJob, 2),
        probes: probes.map((p) => ({
          a_waiting_at_accept: p.waitingAtAccept,
          a_started_between: p.aStartedBetween,
          to_start_ms: round(p.toStartMs, 1),
          to_success_ms: round(p.toSuccessMs, 1),
        })),
      },
      headroom: Object.fromEntries(
        (
          [
            ['fifo', fifo],
            ['fair', fair],
          ] as const
        ).map(([name, r]) => [
          name,
          {
            jobs_per_s: r.run.rate,
            pickup_ms: { p50: round(percentile(r.run.pickups, 50), 2), p95: pickupP95(r.run) },
            call_ms: { fetch: r.run.callStats(0), update: r.run.callStats(1), complete: r.run.callStats(2) },
            completions_in_window: r.run.completionsInWindow,
            backlog_left: r.run.count.open_jobs,
            keys: r.fill.keys,
            distinct_priorities: r.fill.distinctPriorities,
            fill_jobs_per_s: r.fill.jobsPerSecond,
            cpu: { ...r.run.cpu, worker_processes_cores: r.run.workerCores },
            errors: r.run.errors.slice(0, 20),
          },
        ]),
      ),
    },
  };
  const path = await writeResult(result);
  console.log(markdownTable([result]));
  console.log(`\nwritten: ${path}`);
} finally {
  await cleanup();
}
