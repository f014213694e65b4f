// `npm run bench [-- name ...]`: runs each benchmark in turn, each in its own process so one's
// memory and CPU do not pollute the next, then prints one markdown table of every bench's rows
// and writes them all to .easel/bench/results.json. Each bench writes .easel/bench/<name>.json
// (see bench-common.ts); a bench that crashes or writes nothing shows as a failed row.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type BenchResult,
  machineDescription,
  markdownTable,
  REPO_ROOT,
  RESULTS_DIR,
  resultPath,
  SHARED_CORES_CAVEAT,
  writeResult,
} from './bench-common.ts';

const BENCHES = [
  { name: 'model-loop', file: 'test/bench/model-loop.bench.ts' },
  { name: 'api-throughput', file: 'test/bench/api-throughput.bench.ts' },
  { name: 'queue-headroom', file: 'test/bench/queue-headroom.bench.ts' },
  { name: 'worker-pipeline', file: 'test/bench/worker-pipeline.bench.ts' },
  { name: 'event-streams', file: 'test/bench/event-streams.bench.ts' },
  { name: 'fairness', file: 'test/bench/fairness.bench.ts' },
];

const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !BENCHES.some((b) => b.name === name));
if (unknown.length) {
  console.error(`unknown bench: ${unknown.join(', ')}; known: ${BENCHES.map((b) => b.name).join(', ')}`);
  process.exit(2);
}
const selected = BENCHES.filter(
  (b) => (wanted.length === 0 || wanted.includes(b.name)) && existsSync(join(REPO_ROOT, b.file)),
);
const missing = wanted.filter((name) => !selected.some((b) => b.name === name));
if (missing.length) console.error(`not present yet, skipped: ${missing.join(', ')}`);

const results: BenchResult[] = [];
let failed = 0;
for (const bench of selected) {
  console.log(`\n=== ${bench.name} (${bench.file}) ===`);
  // A stale file from an earlier run must not pass for this run's result.
  await rm(resultPath(bench.name), { force: true });
  const started = performance.now();
  const child = spawn(process.execPath, [bench.file], { cwd: REPO_ROOT, stdio: 'inherit' });
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  const seconds = Math.round((performance.now() - started) / 100) / 10;
  let result: BenchResult | undefined;
  try {
    result = JSON.parse(await readFile(resultPath(bench.name), 'utf8')) as BenchResult;
  } catch {
    result = undefined;
  }
  if (code !== 0 || !result) {
    failed++;
    const why = code !== 0 ? `exited with ${signal ?? `code ${code}`}` : 'wrote no result';
    results.push({
      name: bench.name,
      machine: machineDescription(),
      date: new Date().toISOString(),
      rows: [{ metric: `bench ${why}`, value: Number.NaN, unit: '', met: false }],
    });
    continue;
  }
  console.log(`(${bench.name}: ${seconds} s)`);
  results.push(result);
}

const machine = machineDescription();
console.log(`\n## Benchmarks\n`);
console.log(markdownTable(results));
console.log(`\nMachine: ${machine}`);
// Benches add what matters to them (the Postgres version, the ONNX Runtime provider).
for (const r of results) if (r.machine !== machine) console.log(`  ${r.name}: ${r.machine}`);
console.log(`Note: ${SHARED_CORES_CAVEAT}.`);
await writeResult({
  name: 'results',
  machine,
  date: new Date().toISOString(),
  rows: results.flatMap((r) => r.rows.map((row) => ({ ...row, metric: `${r.name}: ${row.metric}` }))),
  details: { benches: results },
});
console.log(`\nwritten: ${join(RESULTS_DIR, 'results.json')}`);
process.exit(failed ? 1 : 0);
