// Worker pipeline benchmark: does the accelerator wait for anything but its own work?
//   - GPU-idle fraction between consecutive jobs while a backlog of 200 drains (goal ≤ 2 %), with a
//     demo UNet sized so one 512², 25-step job takes roughly the 240 ms of an SD 1.5 image on an
//     H100. The size is calibrated on this machine first (the UNet's block count scaled until a
//     job lands within 10 % of 240 ms), since one fixed size runs 1.5× faster or slower from one
//     box, or one day's load, to the next. Busy intervals come from the worker's own log
//     (accelerator_start_ms/end_ms per job).
//   - idle enqueue→start latency: the worker waits on an empty queue; each generation is committed
//     (row + job + wake-up NOTIFY, enqueueGeneration) and timed until the row says started (goal
//     p95 ≤ 25 ms). The API sends its NOTIFY just after the commit instead, one local round trip
//     (under a millisecond here) later than this.
// The real worker process, real pg-boss on the local Postgres, the real S3 server process.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ServiceProcess, startService } from '../../bin/local/service-process.ts';
import { createApiKey } from '../../db/api-keys.repository.ts';
import { insertGeneration } from '../../db/generations.repository.ts';
import { createBoss, enqueueGeneration, ensureGenerationQueue } from '../../db/queue.ts';
import type { NewGeneration } from '../../db/types.ts';
import { writeDemoModel } from '../../gpu-worker/models/demo-model.ts';
import { loadTextToImage } from '../../gpu-worker/models/load-model.ts';
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
  writeResult,
} from './bench-common.ts';

const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 200);
const LATENCY_SAMPLES = Number(process.env.BENCH_LATENCY_SAMPLES ?? 60);
const IDLE_GOAL = 0.02;
const TARGET_JOB_MS = 240;
const UNET_WIDTH = 32;

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

const work = await mkdtemp(join(tmpdir(), 'easel-bench-pipeline-'));
const database = await createTestDatabase('bench_pipeline');
const s3 = await startS3ServerProcess();
const boss = createBoss(database.url, { supervise: false, applicationName: 'bench-producer' });
let worker: ServiceProcess | undefined;

try {
  const modelDir = join(work, 'model');
  const calibrated = await writeCalibratedModel(modelDir);
  await boss.start();
  await ensureGenerationQueue(boss);
  const { apiKey } = await createApiKey(database.db, { name: 'bench' });

  const enqueue = async (overrides: Partial<NewGeneration>, id = randomUUID()) => {
    await database.db.transaction().execute(async (trx) => {
      await insertGeneration(trx, {
        id,
        api_key_id: apiKey.id,
        prompt: 'a lighthouse at dusk, oil painting',
        negative_prompt: 'blurry',
        width: 512,
        height: 512,
        steps: 25,
        guidance_scale: 7.5,
        num_images: 1,
        seed: 1,
        ...overrides,
      });
      await enqueueGeneration(boss, trx, id);
    });
    return id;
  };

  // The backlog is in place before the worker starts, as after an outage or a burst.
  for (let i = 0; i < BACKLOG; i++) await enqueue({ seed: i });

  const busy: { start: number; end: number }[] = [];
  const jobMs: number[] = [];
  let finished = 0;
  let onFinished: (() => void) | undefined;
  worker = await startService({
    name: 'gpu-worker',
    script: 'gpu-worker/main.ts',
    env: {
      ...process.env,
      DATABASE_URL: database.url,
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: 'easel-bench',
      EASEL_DATA_DIR: work,
      MODEL_DIR: modelDir,
      LOG_LEVEL: 'info',
    },
    readyMsg: 'worker ready',
    onLine(line) {
      if (!line.includes('"generation succeeded"')) return;
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

  // Idle pickup: one generation at a time into an empty queue; small, so the sample is pickup only.
  const latencies: number[] = [];
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    const id = randomUUID();
    const succeeded = worker.waitForLog('generation succeeded', (l) => l.generation_id === id);
    const started = worker.waitForLog('generation started', (l) => l.generation_id === id);
    await enqueue(
      { prompt: 'pickup probe', negative_prompt: '', width: 64, height: 64, steps: 1, seed: i },
      id,
    );
    const committed = performance.now();
    await started;
    // The 'generation started' line is written right after the claim; reading it through the pipe
    // adds well under a millisecond. The clock starts at commit: that is when the job exists.
    latencies.push(performance.now() - committed);
    await succeeded;
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
      value: round((busy.length - 1) / (span / 1000), 2),
      unit: 'jobs/s',
    },
    {
      metric: 'idle enqueue→start latency p50',
      value: round(percentile(latencies, 50), 1),
      unit: 'ms',
    },
    {
      metric: 'idle enqueue→start latency p95',
      value: round(percentile(latencies, 95), 1),
      unit: 'ms',
      goal: `≤ ${LATENCY_P95_GOAL_MS} ms`,
      met: percentile(latencies, 95) <= LATENCY_P95_GOAL_MS,
      note: `${LATENCY_SAMPLES} samples, commit → claimed`,
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
    },
  };
  const path = await writeResult(result);
  console.log(`\nWorker pipeline — ${result.machine}\n`);
  console.log(markdownTable([result]));
  console.log(`\nwritten: ${path}`);
} finally {
  await worker?.stop();
  await boss.stop({ graceful: false });
  await s3.stop();
  await database.drop();
  await rm(work, { recursive: true, force: true });
}
