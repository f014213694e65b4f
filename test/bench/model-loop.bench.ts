// Model-loop benchmark (npm run bench): the ratios the model layer promises, measured in one run
// on this machine with the demo pipeline through real ONNX Runtime sessions.
//   - JS overhead per UNet call relative to the UNet's own time (goal ≤ 2 %)
//   - first job after the warm-up vs a steady job (goal ≤ 1.05)
//   - reloading the models for a job vs running it warm (why the worker keeps them loaded)
// Two UNet sizes: the tiny test UNet (overhead dominates, a worst case) and one sized so a
// 25-step 512² job takes a few hundred ms on CPU, nearer a real UNet's per-step cost.
// The same for the demo Kandinsky 2.1 and 2.2 pipelines, whose job is two loops: the prior's 25
// steps (its JS overhead per prior call against the call's own time) and the decoder's UNet loop.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeDemoKandinskyModel } from '../../gpu-worker/models/demo/kandinsky-model.ts';
import { writeDemoModel } from '../../gpu-worker/models/demo/sd-model.ts';
import { loadTextToImage } from '../../gpu-worker/models/load-model.ts';
import type { GenerateRequest, TextToImage } from '../../gpu-worker/models/text-to-image.ts';
import { BENCH_JOB, type BenchRow, machineDescription, round, writeResult } from './bench-common.ts';

const STEADY_RUNS = Number(process.env.BENCH_RUNS ?? 12);
const FIRST_RUNS = 5;
const RELOAD_RUNS = 5;

const job = BENCH_JOB;
const warmup: GenerateRequest = { ...job, prompt: 'warm-up', steps: 2, seed: 0 };

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
};

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const start = performance.now();
  const value = await fn();
  return [value, performance.now() - start];
}

interface Row {
  unet: string;
  unet_ms_per_call: number;
  js_overhead_per_call_ms: number;
  js_overhead_ratio: number;
  first_job_ms: number;
  steady_job_ms: number;
  first_vs_steady: number;
  reload_job_ms: number;
  reload_vs_warm: number;
  /** Two-stage pipelines (Kandinsky): the prior's runs, from timings.priorMs/priorCalls/priorLoopMs. */
  prior?: { prior_ms_per_call: number; js_overhead_per_call_ms: number; js_overhead_ratio: number };
}

async function measure(label: string, dir: string): Promise<Row> {
  const load = () => loadTextToImage(dir, { provider: 'cpu' });
  // As the worker boots: load, one warm-up generation, then the first job. Repeated, because a
  // single first job on a shared 2-core machine is mostly noise.
  const firsts: number[] = [];
  for (let i = 0; i < FIRST_RUNS; i++) {
    const fresh = await load();
    await fresh.generate(warmup);
    firsts.push((await timed(() => fresh.generate(job)))[1]);
    await fresh.release();
  }
  const firstMs = median(firsts);
  const model: TextToImage = await load();
  await model.generate(warmup);
  await model.generate(job);
  const steady: number[] = [];
  const overheads: number[] = [];
  const unetPerCall: number[] = [];
  const priorOverheads: number[] = [];
  const priorPerCall: number[] = [];
  for (let i = 0; i < STEADY_RUNS; i++) {
    const [result, ms] = await timed(() => model.generate({ ...job, seed: 100 + i }));
    steady.push(ms);
    const { loopMs, unetMs, unetCalls, priorMs, priorCalls, priorLoopMs } = result.timings;
    overheads.push((loopMs - unetMs) / unetCalls);
    unetPerCall.push(unetMs / unetCalls);
    if (priorMs !== undefined && priorCalls && priorLoopMs !== undefined) {
      priorOverheads.push((priorLoopMs - priorMs) / priorCalls);
      priorPerCall.push(priorMs / priorCalls);
    }
  }
  await model.release();

  // What a design without a warm worker pays per job: load the sessions, run, release.
  const reloads: number[] = [];
  for (let i = 0; i < RELOAD_RUNS; i++) {
    const [, ms] = await timed(async () => {
      const fresh = await load();
      await fresh.generate(job);
      await fresh.release();
    });
    reloads.push(ms);
  }
  const steadyMs = median(steady);
  const overheadMs = median(overheads);
  const unetMs = median(unetPerCall);
  const priorOverheadMs = median(priorOverheads);
  const priorMs = median(priorPerCall);
  return {
    unet: label,
    unet_ms_per_call: round(unetMs, 3),
    js_overhead_per_call_ms: round(overheadMs, 4),
    js_overhead_ratio: round(overheadMs / unetMs, 4),
    first_job_ms: round(firstMs, 1),
    steady_job_ms: round(steadyMs, 1),
    first_vs_steady: round(firstMs / steadyMs, 3),
    reload_job_ms: round(median(reloads), 1),
    reload_vs_warm: round(median(reloads) / steadyMs, 2),
    ...(priorPerCall.length > 0
      ? {
          prior: {
            prior_ms_per_call: round(priorMs, 4),
            js_overhead_per_call_ms: round(priorOverheadMs, 4),
            js_overhead_ratio: round(priorOverheadMs / priorMs, 4),
          },
        }
      : {}),
  };
}

const work = await mkdtemp(join(tmpdir(), 'easel-bench-'));
try {
  const tinyDir = join(work, 'tiny');
  const sizedDir = join(work, 'sized');
  await writeDemoModel(tinyDir);
  await writeDemoModel(sizedDir, { unetBlocks: 4, unetWidth: 32 });
  const rows = [
    await measure('tiny test UNet', tinyDir),
    await measure('sized UNet (4×32ch blocks)', sizedDir),
  ];
  const kandinskyRows: Row[] = [];
  for (const version of ['2.1', '2.2'] as const) {
    const dir = join(work, `kandinsky-${version}`);
    await writeDemoKandinskyModel(dir, { version });
    kandinskyRows.push(await measure(`Kandinsky ${version} demo`, dir));
  }

  const machine = machineDescription('onnxruntime-node CPU');
  const goal = (ok: boolean) => (ok ? 'met' : 'NOT met');
  console.log(`\nModel loop, 512×512, 25 steps, CFG 7.5, 1 image — ${machine}\n`);
  console.log(
    '| UNet | UNet ms/call | JS overhead ms/call | overhead ratio (goal ≤ 0.02) | first job / steady (goal ≤ 1.05) | reload per job / warm |',
  );
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const r of rows) {
    console.log(
      `| ${r.unet} | ${r.unet_ms_per_call} | ${r.js_overhead_per_call_ms} | ${r.js_overhead_ratio} (${goal(r.js_overhead_ratio <= 0.02)}) | ${r.first_job_ms} / ${r.steady_job_ms} ms = ${r.first_vs_steady} (${goal(r.first_vs_steady <= 1.05)}) | ${r.reload_job_ms} / ${r.steady_job_ms} ms = ${r.reload_vs_warm}× |`,
    );
  }
  console.log(
    '\nKandinsky demo loops, same job: prior 25 steps at CFG 4, then 25 decoder steps (2.1 DDIM, 2.2 DDPM) at CFG 7.5\n',
  );
  console.log(
    '| model | UNet ms/call | UNet JS overhead ms/call | UNet overhead ratio (goal ≤ 0.02) | prior ms/call | prior JS overhead ms/call | prior overhead ratio (goal ≤ 0.02) | first job / steady (goal ≤ 1.05) | reload per job / warm |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of kandinskyRows) {
    const p = r.prior;
    console.log(
      `| ${r.unet} | ${r.unet_ms_per_call} | ${r.js_overhead_per_call_ms} | ${r.js_overhead_ratio} (${goal(r.js_overhead_ratio <= 0.02)}) | ${p?.prior_ms_per_call} | ${p?.js_overhead_per_call_ms} | ${p?.js_overhead_ratio} (${goal((p?.js_overhead_ratio ?? Number.POSITIVE_INFINITY) <= 0.02)}) | ${r.first_job_ms} / ${r.steady_job_ms} ms = ${r.first_vs_steady} (${goal(r.first_vs_steady <= 1.05)}) | ${r.reload_job_ms} / ${r.steady_job_ms} ms = ${r.reload_vs_warm}× |`,
    );
  }
  const benchRows: BenchRow[] = rows.flatMap((r) => [
    {
      metric: `JS overhead ÷ UNet time per call (${r.unet})`,
      value: r.js_overhead_ratio,
      unit: '',
      goal: '≤ 0.02',
      met: r.js_overhead_ratio <= 0.02,
    },
    {
      metric: `first job ÷ steady job (${r.unet})`,
      value: r.first_vs_steady,
      unit: '',
      goal: '≤ 1.05',
      met: r.first_vs_steady <= 1.05,
    },
    { metric: `reload per job ÷ warm job (${r.unet})`, value: r.reload_vs_warm, unit: '×' },
    { metric: `steady job, 512², 25 steps (${r.unet})`, value: r.steady_job_ms, unit: 'ms' },
  ]);
  for (const r of kandinskyRows) {
    const priorRatio = r.prior?.js_overhead_ratio ?? Number.NaN;
    benchRows.push(
      {
        metric: `JS overhead ÷ UNet time per call (${r.unet})`,
        value: r.js_overhead_ratio,
        unit: '',
        goal: '≤ 0.02',
        met: r.js_overhead_ratio <= 0.02,
      },
      {
        metric: `JS overhead ÷ prior time per call (${r.unet})`,
        value: priorRatio,
        unit: '',
        goal: '≤ 0.02',
        met: priorRatio <= 0.02,
      },
      {
        metric: `first job ÷ steady job (${r.unet})`,
        value: r.first_vs_steady,
        unit: '',
        goal: '≤ 1.05',
        met: r.first_vs_steady <= 1.05,
      },
      { metric: `reload per job ÷ warm job (${r.unet})`, value: r.reload_vs_warm, unit: '×' },
      {
        metric: `steady job, 512², prior 25 + decoder 25 steps (${r.unet})`,
        value: r.steady_job_ms,
        unit: 'ms',
      },
    );
  }
  const path = await writeResult({
    name: 'model-loop',
    machine,
    date: new Date().toISOString(),
    rows: benchRows,
    details: { rows, kandinsky: kandinskyRows },
  });
  console.log(`\nwritten: ${path}`);
} finally {
  await rm(work, { recursive: true, force: true });
}
