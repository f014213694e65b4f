// Worker pipeline benchmark: does the accelerator wait for anything but its own work? Every job
// goes the way a user's does: POST /v1/generations on the real API process, which commits the row
// and job in one transaction and then wakes the workers with its NOTIFY.
//   - GPU-idle fraction between consecutive jobs while a backlog of 200 drains (goal ≤ 2 %), with a
//     demo UNet sized so one 512², 25-step job takes roughly the 240 ms of an SD 1.5 image on an
//     H100. The size is calibrated on this machine first (the UNet's block count scaled until a
//     job lands within 10 % of 240 ms), since one fixed size runs 1.5× faster or slower from one
//     box, or one day's load, to the next. Busy intervals come from the worker's own log
//     (accelerator_start_ms/end_ms per job).
//   - idle create→start latency: the worker waits on an empty queue; each generation is created
//     over HTTP and timed from the moment the client sends the request until the worker has
//     claimed it (goal p95 ≤ 25 ms). The resource's own created_at → started_at is reported too.
// Then the same two measurements with two models served at once: a second worker process holds a
// second model (a copy of the calibrated folder whose easel-model.json names it `second`, with the
// same capabilities), each worker fetching only its own model's queue.
//   - a backlog split across both models (created through the API with `model` set) drains on
//     both workers at once; the GPU-idle fraction is reported per worker, over its own busy span.
//     Both workers share this machine's cores, so each job runs about twice as long as alone, or
//     longer: the idle fraction is the figure to compare, not the throughput.
//   - idle pickup probes alternate between the two models, each timed to its own worker's
//     'generation started' line.
// The real API and worker processes, real pg-boss on the local Postgres, the real S3 server process.
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVICES, type ServiceProcess, startService } from '../../bin/local/service-process.ts';
import { createApiKey } from '../../db/api-keys.repository.ts';
import { registerModel } from '../../db/models.repository.ts';
import { writeDemoModel } from '../../gpu-worker/models/demo/sd-model.ts';
import { loadTextToImage } from '../../gpu-worker/models/load-model.ts';
import { MODEL_CARD_FILE, readModelCard } from '../../gpu-worker/models/model-card.ts';
import { GENERATION_STARTED, GENERATION_SUCCEEDED } from '../../shared/log-events.ts';
import { createTestDatabase } from '../harness/database.ts';
import { startS3ServerProcess } from '../harness/s3-server.ts';
import {
  BENCH_JOB,
  type BenchRow,
  machineDescription,
  markdownTable,
  percentile,
  round,
  SHARED_CORES_CAVEAT,
  sleep,
  writeResult,
} from './bench-common.ts';

const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 200);
const LATENCY_SAMPLES = Number(process.env.BENCH_LATENCY_SAMPLES ?? 60);
const LATENCY_WARMUP = 3;
const IDLE_GOAL = 0.02;
const TARGET_JOB_MS = 240;
const UNET_WIDTH = 32;
/** The calibrated model's id: set with MODEL_ID on its worker, and the API's DEFAULT_MODEL. */
const FIRST_MODEL_ID = 'first';
/** The second model's id, from its folder's easel-model.json. */
const SECOND_MODEL_ID = 'second';
/** Probes right after the two-model backlog not counted as idle pickup: this many per worker. */
const TWO_MODEL_WARMUP = 2 * LATENCY_WARMUP;

const JOB = BENCH_JOB;

/** Writes a demo model whose 512², 25-step job takes about TARGET_JOB_MS here; returns its block count. */
async function writeCalibratedModel(dir: string): Promise<{ blocks: number; jobMs: number }> {
  let blocks = 8;
  let jobMs = 0;
  let previous: { blocks: number; jobMs: number } | undefined;
  for (let attempt = 0; attempt < 4; attempt++) {
    await writeDemoModel(dir, { unetBlocks: blocks, unetWidth: UNET_WIDTH });
    const model = await loadTextToImage(dir, { provider: 'cpu' });
    await model.generate({ ...JOB, steps: 2 });
    const runs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const start = performance.now();
      await model.generate({ ...JOB, seed: i });
      runs.push(performance.now() - start);
    }
    await model.release();
    jobMs = percentile(runs, 50);
    console.log(`calibration: ${blocks} UNet blocks → ${round(jobMs, 1)} ms per job`);
    if (Math.abs(jobMs - TARGET_JOB_MS) / TARGET_JOB_MS <= 0.1) break;
    // A job costs a fixed part (text encoder, VAE, the UNet's outer layers) plus about the same
    // per block: the first guess scales proportionally, later ones follow the measured slope.
    const slope =
      previous && previous.blocks !== blocks
        ? (jobMs - previous.jobMs) / (blocks - previous.blocks)
        : jobMs / blocks;
    const next = Math.max(1, Math.round(blocks + (TARGET_JOB_MS - jobMs) / Math.max(slope, 0.1)));
    if (next === blocks) break;
    previous = { blocks, jobMs };
    blocks = next;
  }
  return { blocks, jobMs };
}
const LATENCY_P95_GOAL_MS = 25;

/** One worker's accelerator busy intervals (its own clock) and per-job accelerator time. */
interface JobRecord {
  busy: { start: number; end: number }[];
  jobMs: number[];
  /** Wall clock (the lines' pino `time`) of its first start and last success. */
  firstStartedAt?: number;
  lastSucceededAt?: number;
  /** Feeds one of the worker's output lines. */
  onLine(line: string): void;
}

function jobRecord(): JobRecord {
  const record: JobRecord = {
    busy: [],
    jobMs: [],
    onLine(line) {
      if (line.includes(`"${GENERATION_STARTED}"`)) {
        record.firstStartedAt ??= Number((JSON.parse(line) as { time: number }).time);
        return;
      }
      if (!line.includes(`"${GENERATION_SUCCEEDED}"`)) return;
      const parsed = JSON.parse(line) as {
        time: number;
        accelerator_start_ms: number;
        accelerator_end_ms: number;
        timings: { encode_ms: number; denoise_ms: number; decode_ms: number };
      };
      record.busy.push({ start: parsed.accelerator_start_ms, end: parsed.accelerator_end_ms });
      record.jobMs.push(parsed.timings.encode_ms + parsed.timings.denoise_ms + parsed.timings.decode_ms);
      record.lastSucceededAt = Number(parsed.time);
    },
  };
  return record;
}

/** Gaps between consecutive busy intervals, and their share of the whole busy span. */
function idleStats(intervals: readonly { start: number; end: number }[]) {
  const busy = [...intervals].sort((a, b) => a.start - b.start);
  const gaps: number[] = [];
  for (let i = 1; i < busy.length; i++) {
    gaps.push(Math.max(0, (busy[i]?.start ?? 0) - (busy[i - 1]?.end ?? 0)));
  }
  const idle = gaps.reduce((a, b) => a + b, 0);
  const span = (busy.at(-1)?.end ?? 0) - (busy[0]?.start ?? 0);
  return { gaps, idle, span, fraction: idle / span, maxGap: Math.max(0, ...gaps), jobs: busy.length };
}

/** Resolves with `promise`, or fails after `ms` saying what it waited for. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  // A waiter left pending here fails when its service stops; that must not crash the bench.
  promise.catch(() => {});
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

const work = await mkdtemp(join(tmpdir(), 'easel-bench-pipeline-'));
const database = await createTestDatabase('bench_pipeline');
const s3 = await startS3ServerProcess();
let api: ServiceProcess | undefined;
let worker: ServiceProcess | undefined;
let secondWorker: ServiceProcess | undefined;
/** Phase two's record of the first worker's lines (the first phase records its own, below). */
let firstWorkerRecord: JobRecord | undefined;

try {
  const modelDir = join(work, 'model');
  const calibrated = await writeCalibratedModel(modelDir);
  const { key } = await createApiKey(database.db, { name: 'bench' });
  // Registered as an operator would (`easel models register first --dir …`): the API takes the
  // backlog before the model's worker has started and announced it.
  const firstCard = await readModelCard(modelDir, FIRST_MODEL_ID);
  await registerModel(database.db, {
    id: firstCard.id,
    family: firstCard.family.name,
    capabilities: firstCard.capabilities,
  });
  const services = {
    ...process.env,
    DATABASE_URL: database.url,
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: 'easel-bench',
    EASEL_DATA_DIR: work,
    LOG_LEVEL: 'info',
  };
  api = await startService({
    name: 'api',
    // The whole backlog is one key's, so its in-flight cap must hold it.
    // A request without `model` (the whole first phase) runs on the calibrated model, also once a
    // second model is served.
    env: {
      ...services,
      PORT: '0',
      MAX_IN_FLIGHT_PER_KEY: String(BACKLOG + LATENCY_SAMPLES),
      DEFAULT_MODEL: FIRST_MODEL_ID,
    },
  });
  const baseUrl = String(api.ready.url);

  /** POST /v1/generations as a client does; resolves with the new generation's id and model. */
  const post = async (body: Record<string, unknown>): Promise<{ id: string; model: string }> => {
    const res = await fetch(`${baseUrl}/v1/generations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (res.status !== 202) throw new Error(`create answered ${res.status}: ${await res.text()}`);
    return (await res.json()) as { id: string; model: string };
  };
  const create = async (body: Record<string, unknown>): Promise<string> => (await post(body)).id;
  /** A create naming `model`; checks the API put it on that model. */
  const createOn = async (model: string, body: Record<string, unknown>): Promise<string> => {
    const created = await post({ ...body, model });
    if (created.model !== model) throw new Error(`${created.id} went to ${created.model}, not ${model}`);
    return created.id;
  };
  const backlogJob = {
    prompt: 'a lighthouse at dusk, oil painting',
    negative_prompt: 'blurry',
    width: JOB.width,
    height: JOB.height,
    steps: JOB.steps,
    guidance_scale: 7.5,
  };

  // The backlog is in place before the worker starts, as after an outage or a burst.
  for (let i = 0; i < BACKLOG; i++) await create({ ...backlogJob, seed: i });

  const busy: { start: number; end: number }[] = [];
  const jobMs: number[] = [];
  let finished = 0;
  let onFinished: (() => void) | undefined;
  worker = await startService({
    name: 'worker',
    env: { ...services, MODEL_DIR: modelDir, MODEL_ID: FIRST_MODEL_ID },
    onLine(line) {
      firstWorkerRecord?.onLine(line);
      if (!line.includes(`"${GENERATION_SUCCEEDED}"`)) return;
      const parsed = JSON.parse(line) as {
        accelerator_start_ms: number;
        accelerator_end_ms: number;
        timings: { encode_ms: number; denoise_ms: number; decode_ms: number };
      };
      busy.push({ start: parsed.accelerator_start_ms, end: parsed.accelerator_end_ms });
      jobMs.push(parsed.timings.encode_ms + parsed.timings.denoise_ms + parsed.timings.decode_ms);
      finished++;
      onFinished?.();
    },
  });
  const workerPid = worker.child.pid;
  await new Promise<void>((resolve) => {
    onFinished = () => {
      if (finished >= BACKLOG) resolve();
    };
    onFinished();
  });

  busy.sort((a, b) => a.start - b.start);
  let idle = 0;
  let maxGap = 0;
  const gaps: number[] = [];
  for (let i = 1; i < busy.length; i++) {
    const gap = Math.max(0, (busy[i]?.start ?? 0) - (busy[i - 1]?.end ?? 0));
    gaps.push(gap);
    idle += gap;
    maxGap = Math.max(maxGap, gap);
  }
  const span = (busy.at(-1)?.end ?? 0) - (busy[0]?.start ?? 0);
  const idleFraction = idle / span;
  const medianJob = percentile(jobMs, 50);
  // The probes below log successes into `busy` too: the throughput counts the backlog's jobs only.
  const backlogJobs = busy.length;

  // Idle pickup: one generation at a time into an empty queue; small, so the sample is pickup only.
  // The clock starts when the client sends the request (the create's own latency is part of what
  // a client waits) and stops at the worker's 'generation started' line, written right after its
  // claim commits.
  // The first probes run right after the backlog (its last tails, a major GC, ORT's first run at
  // the probe's size): they are reported on their own, not counted as idle pickup.
  const latencies: number[] = [];
  const serverLatencies: number[] = [];
  const warmupLatencies: number[] = [];
  const probe = worker;
  for (let i = -LATENCY_WARMUP; i < LATENCY_SAMPLES; i++) {
    // The queue is empty, so the next job to start is this one (checked below).
    // Timed by the worker's own clock (the line's pino `time`, the same host clock as Date.now()
    // here), so the pipe and this process's event loop are not counted as pickup.
    const started = probe
      .waitForLog(GENERATION_STARTED)
      .then((line) => ({ id: String(line.generation_id), at: Number(line.time) }));
    const succeeded = probe.waitForLog(GENERATION_SUCCEEDED);
    const sent = Date.now();
    const id = await create({
      prompt: 'pickup probe',
      width: 64,
      height: 64,
      steps: 1,
      seed: i + LATENCY_WARMUP,
    });
    const start = await started;
    if (start.id !== id) throw new Error(`expected ${id} to start, saw ${start.id}`);
    await succeeded;
    if (i < 0) {
      warmupLatencies.push(start.at - sent);
      continue;
    }
    latencies.push(start.at - sent);
    const row = (await (
      await fetch(`${baseUrl}/v1/generations/${id}`, { headers: { authorization: `Bearer ${key}` } })
    ).json()) as { created_at: string; started_at: string | null; status: string };
    serverLatencies.push(Date.parse(row.started_at ?? '') - Date.parse(row.created_at));
  }

  // --- Two models served at once ---
  // The second model: a copy of the calibrated folder whose easel-model.json gives only an id, so
  // its capabilities are the same family defaults and it accepts the same requests. Its worker
  // announces it at start, before it reports ready.
  const first = probe;
  const secondDir = join(work, 'model-second');
  await cp(modelDir, secondDir, { recursive: true });
  await writeFile(join(secondDir, MODEL_CARD_FILE), JSON.stringify({ id: SECOND_MODEL_ID }));
  let secondWorkerRecord: JobRecord | undefined;
  secondWorker = await startService({
    name: 'worker-second',
    ...SERVICES.worker,
    env: { ...services, MODEL_DIR: secondDir },
    onLine: (line) => secondWorkerRecord?.onLine(line),
  });
  const second = secondWorker;
  const cores = availableParallelism();

  // The split backlog, alternating models, created while both workers wait on empty queues (each
  // starts on its first job at once; the creates run far ahead of the drain).
  const twoModels = [FIRST_MODEL_ID, SECOND_MODEL_ID] as const;
  const share: Record<string, number> = {
    [FIRST_MODEL_ID]: Math.ceil(BACKLOG / 2),
    [SECOND_MODEL_ID]: Math.floor(BACKLOG / 2),
  };
  const records: Record<string, JobRecord> = {
    [FIRST_MODEL_ID]: jobRecord(),
    [SECOND_MODEL_ID]: jobRecord(),
  };
  firstWorkerRecord = records[FIRST_MODEL_ID];
  secondWorkerRecord = records[SECOND_MODEL_ID];
  const createStarted = performance.now();
  for (let i = 0; i < BACKLOG; i++) {
    await createOn(twoModels[i % 2] as string, { ...backlogJob, seed: BACKLOG + i });
  }
  const backlogCreateMs = performance.now() - createStarted;
  const drainDeadline = Date.now() + BACKLOG * 30_000;
  while (twoModels.some((model) => (records[model]?.busy.length ?? 0) < (share[model] ?? 0))) {
    if (Date.now() > drainDeadline) throw new Error('the two-model backlog did not drain in time');
    await sleep(100);
  }
  firstWorkerRecord = undefined;
  secondWorkerRecord = undefined;
  const twoStats = Object.fromEntries(
    twoModels.map((model) => [model, idleStats(records[model]?.busy ?? [])]),
  );
  // How long both drained together (wall clock: first start to last success, per worker).
  const windows = twoModels.map((model) => ({
    from: records[model]?.firstStartedAt ?? Number.NaN,
    to: records[model]?.lastSucceededAt ?? Number.NaN,
  }));
  const together = Math.min(...windows.map((w) => w.to)) - Math.max(...windows.map((w) => w.from));
  const wholeDrain = Math.max(...windows.map((w) => w.to)) - Math.min(...windows.map((w) => w.from));

  // Idle pickup, alternating models: each probe is timed to its own model's worker, and the other
  // worker must not have started it.
  const workerOf: Record<string, ServiceProcess> = { [FIRST_MODEL_ID]: first, [SECOND_MODEL_ID]: second };
  const twoLatencies: number[] = [];
  const twoLatenciesByModel: Record<string, number[]> = { [FIRST_MODEL_ID]: [], [SECOND_MODEL_ID]: [] };
  const twoWarmup: { model: string; ms: number }[] = [];
  for (let i = -TWO_MODEL_WARMUP; i < LATENCY_SAMPLES; i++) {
    const model = twoModels[(i + TWO_MODEL_WARMUP) % 2] as string;
    const target = workerOf[model] as ServiceProcess;
    const other = model === FIRST_MODEL_ID ? second : first;
    const started = target
      .waitForLog(GENERATION_STARTED)
      .then((line) => ({ id: String(line.generation_id), at: Number(line.time) }));
    const succeeded = target.waitForLog(GENERATION_SUCCEEDED);
    const sent = Date.now();
    const id = await createOn(model, {
      prompt: 'pickup probe',
      width: 64,
      height: 64,
      steps: 1,
      seed: i + TWO_MODEL_WARMUP,
    });
    const start = await within(started, 60_000, `${model}'s worker to start ${id}`);
    if (start.id !== id) throw new Error(`expected ${id} to start on ${model}'s worker, saw ${start.id}`);
    await within(succeeded, 60_000, `${model}'s worker to finish ${id}`);
    if (other.recent().some((line) => line.includes(`"${GENERATION_STARTED}"`) && line.includes(id))) {
      throw new Error(`${id} (model ${model}) also started on the other model's worker`);
    }
    if (i < 0) {
      twoWarmup.push({ model, ms: start.at - sent });
      continue;
    }
    twoLatencies.push(start.at - sent);
    twoLatenciesByModel[model]?.push(start.at - sent);
  }

  const rows: BenchRow[] = [
    {
      metric: `GPU-idle fraction between consecutive jobs, backlog ${BACKLOG}`,
      value: round(idleFraction, 4),
      unit: '',
      goal: `≤ ${IDLE_GOAL}`,
      met: idleFraction <= IDLE_GOAL,
      note: `demo UNet ${calibrated.blocks}×${UNET_WIDTH}ch blocks; median job on the accelerator ${round(medianJob, 1)} ms; mean gap ${round(idle / gaps.length, 2)} ms, max ${round(maxGap, 1)} ms`,
    },
    {
      metric: 'backlog throughput',
      value: round((backlogJobs - 1) / (span / 1000), 2),
      unit: 'jobs/s',
    },
    {
      metric: 'idle create→start latency through the API p50',
      value: round(percentile(latencies, 50), 1),
      unit: 'ms',
    },
    {
      metric: 'idle create→start latency through the API p95',
      value: round(percentile(latencies, 95), 1),
      unit: 'ms',
      goal: `≤ ${LATENCY_P95_GOAL_MS} ms`,
      met: percentile(latencies, 95) <= LATENCY_P95_GOAL_MS,
      note: `${LATENCY_SAMPLES} samples, POST sent → worker claimed; the ${LATENCY_WARMUP} probes right after the backlog, not counted: ${warmupLatencies.map((l) => round(l, 1)).join(', ')} ms`,
    },
    {
      metric: "idle pickup, the resource's created_at → started_at p95",
      value: round(percentile(serverLatencies, 95), 1),
      unit: 'ms',
      note: 'millisecond timestamps from Postgres and the worker',
    },
    ...twoModels.map((model): BenchRow => {
      const stats = twoStats[model] as ReturnType<typeof idleStats>;
      const median = percentile(records[model]?.jobMs ?? [], 50);
      return {
        metric: `two models: GPU-idle fraction, worker ${model}`,
        value: round(stats.fraction, 4),
        unit: '',
        goal: `≤ ${IDLE_GOAL}`,
        met: stats.fraction <= IDLE_GOAL,
        note:
          `its ${stats.jobs} of a ${BACKLOG} backlog split across models ${twoModels.join(' and ')}; ` +
          `both workers share this machine's ${cores} CPU cores, so each job runs slower ` +
          `(median on the accelerator ${round(median, 1)} ms, ${round(medianJob, 1)} ms alone): the idle ` +
          `fraction is the figure, not throughput; mean gap ${round(stats.idle / Math.max(1, stats.gaps.length), 2)} ms, ` +
          `max ${round(stats.maxGap, 1)} ms; both drained together ${round(together / 1000, 1)} s of ${round(wholeDrain / 1000, 1)} s`,
      };
    }),
    {
      metric: 'two models: idle create→start latency through the API p50',
      value: round(percentile(twoLatencies, 50), 1),
      unit: 'ms',
    },
    {
      metric: 'two models: idle create→start latency through the API p95',
      value: round(percentile(twoLatencies, 95), 1),
      unit: 'ms',
      goal: `≤ ${LATENCY_P95_GOAL_MS} ms`,
      met: percentile(twoLatencies, 95) <= LATENCY_P95_GOAL_MS,
      note:
        `${twoLatencies.length} samples alternating ${twoModels.join('/')}, POST sent → that model's worker claimed ` +
        `(p95 ${twoModels.map((m) => `${m} ${round(percentile(twoLatenciesByModel[m] ?? [], 95), 1)} ms`).join(', ')}); ` +
        `the ${TWO_MODEL_WARMUP} probes right after the backlog, not counted: ` +
        `${twoWarmup.map((w) => `${w.model} ${round(w.ms, 1)}`).join(', ')} ms`,
    },
  ];
  const result = {
    name: 'worker-pipeline',
    machine: machineDescription(`onnxruntime-node CPU; ${SHARED_CORES_CAVEAT}`),
    date: new Date().toISOString(),
    rows,
    details: {
      worker_pid: workerPid,
      gaps_ms: gaps.map((g) => round(g, 2)),
      latencies_ms: latencies.map((l) => round(l, 2)),
      warmup_latencies_ms: warmupLatencies.map((l) => round(l, 2)),
      created_to_started_ms: serverLatencies,
      two_models: {
        models: { [FIRST_MODEL_ID]: modelDir, [SECOND_MODEL_ID]: secondDir },
        worker_pids: { [FIRST_MODEL_ID]: workerPid, [SECOND_MODEL_ID]: second.child.pid },
        backlog_per_model: share,
        backlog_create_ms: round(backlogCreateMs, 1),
        both_draining_ms: round(together, 1),
        whole_drain_ms: round(wholeDrain, 1),
        gaps_ms: Object.fromEntries(
          twoModels.map((m) => [m, (twoStats[m]?.gaps ?? []).map((g) => round(g, 2))]),
        ),
        job_ms: Object.fromEntries(
          twoModels.map((m) => [m, (records[m]?.jobMs ?? []).map((j) => round(j, 1))]),
        ),
        latencies_ms: Object.fromEntries(
          twoModels.map((m) => [m, (twoLatenciesByModel[m] ?? []).map((l) => round(l, 2))]),
        ),
        warmup_latencies_ms: twoWarmup.map((w) => ({ model: w.model, ms: round(w.ms, 2) })),
      },
    },
  };
  const path = await writeResult(result);
  console.log(`\nWorker pipeline — ${result.machine}\n`);
  console.log(markdownTable([result]));
  console.log(`\nwritten: ${path}`);
} finally {
  await secondWorker?.stop();
  await worker?.stop();
  await api?.stop();
  await s3.stop();
  await database.drop();
  await rm(work, { recursive: true, force: true });
}
