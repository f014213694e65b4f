// What every benchmark shares: the result protocol (one JSON file per bench under .easel/bench,
// which test/bench/run.ts gathers into one table), the machine line, percentiles, and CPU
// accounting read from /proc so a result can say where the cores went.
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GenerateRequest } from '../../gpu-worker/models/text-to-image.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const RESULTS_DIR = join(REPO_ROOT, '.easel', 'bench');

/** The job the model benches time: one SD 1.5-style image (512², 25 steps, CFG 7.5). */
export const BENCH_JOB: GenerateRequest = {
  prompt: 'a lighthouse at dusk, oil painting',
  negativePrompt: 'blurry',
  width: 512,
  height: 512,
  steps: 25,
  guidanceScale: 7.5,
  seed: 42,
  numImages: 1,
};

export interface BenchRow {
  metric: string;
  value: number;
  unit: string;
  /** Human-readable, e.g. '≥ 0.7' or '≤ 50 ms'. */
  goal?: string;
  met?: boolean;
  note?: string;
}

export interface BenchResult {
  name: string;
  machine: string;
  date: string;
  rows: BenchRow[];
  details?: unknown;
}

/** Said in every bench's output: the numbers are only comparable with this in mind. */
export const SHARED_CORES_CAVEAT =
  'load generator, services under test and Postgres all run on this one machine and share its cores';

export function machineDescription(extra?: string): string {
  const cpu = cpus();
  const base = `${cpu.length} × ${cpu[0]?.model.trim() ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  return extra ? `${base}, ${extra}` : base;
}

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number;
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function resultPath(name: string): string {
  return join(RESULTS_DIR, `${name}.json`);
}

export async function writeResult(result: BenchResult): Promise<string> {
  await mkdir(RESULTS_DIR, { recursive: true });
  const path = resultPath(result.name);
  await writeFile(path, `${JSON.stringify(result, null, 2)}\n`);
  return path;
}

export function formatValue(row: Pick<BenchRow, 'value' | 'unit'>): string {
  if (!Number.isFinite(row.value)) return '—';
  return row.unit ? `${row.value} ${row.unit}` : String(row.value);
}

/** A markdown table of one or more benches' rows. */
export function markdownTable(results: readonly BenchResult[]): string {
  const lines = ['| bench | metric | value | goal | met |', '| --- | --- | --- | --- | --- |'];
  for (const result of results) {
    for (const row of result.rows) {
      const met = row.met === undefined ? '' : row.met ? 'met' : '**NOT met**';
      const note = row.note ? ` (${row.note})` : '';
      lines.push(
        `| ${result.name} | ${row.metric}${note} | ${formatValue(row)} | ${row.goal ?? ''} | ${met} |`,
      );
    }
  }
  return lines.join('\n');
}

// --- CPU accounting (Linux /proc; every function answers undefined elsewhere) ---

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux this runs on

/** CPU seconds (user + system) one process has used so far. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name, which may itself contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

/** Ids of every process with this command name (e.g. all of Postgres's). */
export function commandPids(command: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  return entries
    .filter((entry) => {
      if (!/^\d+$/.test(entry)) return false;
      try {
        return readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === command;
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Busy and total CPU seconds of the whole machine so far (all cores). */
export function machineCpuSeconds(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const [, ...values] = line.trim().split(/\s+/);
    const n = values.map(Number);
    const total = n.reduce((a, b) => a + b, 0);
    const idle = (n[3] ?? 0) + (n[4] ?? 0); // idle + iowait
    return { busy: (total - idle) / TICKS_PER_SECOND, total: total / TICKS_PER_SECOND };
  } catch {
    return undefined;
  }
}

export interface CpuProbe {
  /** Named process ids to follow (e.g. the API process). */
  pids?: Record<string, number | undefined>;
  /**
   * Named groups of process ids, summed; pass the group's current members at each snapshot
   * (e.g. a database's backends, which come and go with the pools' idle timeouts).
   */
  groups?: Record<string, number[]>;
  /** Command names whose processes are summed like a group (e.g. postgres). */
  commands?: string[];
  /** Whether to include this process (process.cpuUsage). */
  self?: string;
}

export interface CpuSnapshot {
  at: number;
  values: Record<string, number | undefined>;
  groups: Record<string, Map<number, number>>;
  machine?: { busy: number; total: number };
}

export function cpuSnapshot(probe: CpuProbe): CpuSnapshot {
  const values: Record<string, number | undefined> = {};
  for (const [name, pid] of Object.entries(probe.pids ?? {})) {
    values[name] = pid === undefined ? undefined : processCpuSeconds(pid);
  }
  const groups: Record<string, Map<number, number>> = {};
  const allGroups = { ...probe.groups };
  for (const command of probe.commands ?? []) allGroups[command] = commandPids(command);
  for (const [name, pids] of Object.entries(allGroups)) {
    const members = new Map<number, number>();
    for (const pid of pids) {
      const seconds = processCpuSeconds(pid);
      if (seconds !== undefined) members.set(pid, seconds);
    }
    groups[name] = members;
  }
  if (probe.self) {
    const usage = process.cpuUsage();
    values[probe.self] = (usage.user + usage.system) / 1e6;
  }
  return { at: performance.now(), values, groups, machine: machineCpuSeconds() };
}

/**
 * Cores used by each followed process between two snapshots (1.0 = one core fully busy), and
 * the machine's busy share of all its cores. A group member that appeared in between counts
 * whole (it started in between); one that exited in between is lost (a small undercount).
 */
export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot): Record<string, number> {
  const seconds = (b.at - a.at) / 1000;
  const out: Record<string, number> = {};
  for (const [name, end] of Object.entries(b.values)) {
    const start = a.values[name];
    if (start !== undefined && end !== undefined) out[`${name}_cores`] = round((end - start) / seconds, 2);
  }
  for (const [name, members] of Object.entries(b.groups)) {
    const before = a.groups[name];
    if (!before || members.size === 0) continue;
    let used = 0;
    for (const [pid, end] of members) used += end - (before.get(pid) ?? 0);
    out[`${name}_cores`] = round(used / seconds, 2);
  }
  if (a.machine && b.machine) {
    const total = b.machine.total - a.machine.total;
    if (total > 0) out.machine_busy_share = round((b.machine.busy - a.machine.busy) / total, 3);
  }
  return out;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Process ids of the Postgres backends connected to the current database (Postgres on this
 * machine only), but the benches' own activity sampler: their CPU is what a bench's load costs
 * the server, apart from other databases' clients.
 */
export async function backendPids(query: (text: string) => Promise<{ rows: { pid: number }[] }>) {
  const { rows } = await query(
    `select pid from pg_stat_activity
     where datname = current_database() and application_name <> '${SAMPLER_APPLICATION_NAME}'`,
  );
  return rows.map((r) => r.pid);
}

export const SAMPLER_APPLICATION_NAME = 'easel-bench-sampler';
