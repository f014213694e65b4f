// Event streams benchmark (issue 14): with 500 server-sent event streams open on one API process,
// how many events per second reach the clients, how long a worker's progress write takes to show
// up on a client (p95), and what the streams cost the API process in memory and CPU.
//   - One real API process (api/main.ts); a test database with the demo model registered; the
//     generations created through POST /v1/generations, spread over several API keys.
//   - The streams are opened by this process with fetch() and a streaming body reader, as a web
//     page must: most on GET /v1/generations/{id}/events (several per generation), some on
//     GET /v1/events (all of a key's generations), so both of the hub's fan-out paths are loaded.
//   - No worker runs: this process plays it, calling the worker's own repository functions:
//     markRunning to claim (its status NOTIFY) and recordProgress to persist a step (its progress
//     NOTIFY), each generation's step advanced every BENCH_PROGRESS_INTERVAL_MS (250 ms by
//     default: the worker's own cap, gpu-worker/progress.ts, so every generation runs at the
//     fastest rate a real one reports), phases spread evenly across the interval.
//   - Latency: a client's receipt of a step's event minus the moment recordProgress resolved here
//     (the write committed; its NOTIFY goes out at commit), both on this process's clock
//     (performance.now()). The same from the moment the write was sent is reported too: the true
//     figure lies between the two.
//   - Steps skipped: the hub reads a generation once per batch of notifications and sends the
//     state it reads, so two steps written between reads show as one (documented: "a state that is
//     replaced before it can be sent is skipped"). Reported as a fraction, not asserted.
//   - API RSS (/proc/<pid>/status VmRSS) with no stream open, then with all open under load; its
//     CPU over the measured window.
//   BENCH_STREAMS (500), BENCH_GENERATIONS (50), BENCH_KEYS (10), BENCH_KEY_STREAMS (per key on
//   /v1/events, 5), BENCH_PROGRESS_INTERVAL_MS (250), BENCH_WARMUP (s, 3), BENCH_DURATION (s, 20)
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ServiceProcess, startService } from '../../bin/local/service-process.ts';
import { createApiKey } from '../../db/api-keys.repository.ts';
import { createDb, type Db } from '../../db/connect.ts';
import { markRunning, recordProgress } from '../../db/generations.repository.ts';
import { createTestDatabase } from '../harness/database.ts';
import { DEMO_MODEL_ID, registerDemoModel } from '../harness/models.ts';
import { startS3ServerProcess } from '../harness/s3-server.ts';
import {
  type BenchRow,
  cpuBetween,
  cpuSnapshot,
  machineDescription,
  markdownTable,
  percentile,
  round,
  SHARED_CORES_CAVEAT,
  sleep,
  writeResult,
} from './bench-common.ts';

const STREAMS = Number(process.env.BENCH_STREAMS ?? 500);
const GENERATIONS = Number(process.env.BENCH_GENERATIONS ?? 50);
const KEYS = Number(process.env.BENCH_KEYS ?? 10);
const KEY_STREAMS_PER_KEY = Number(process.env.BENCH_KEY_STREAMS ?? 5);
const INTERVAL_MS = Number(process.env.BENCH_PROGRESS_INTERVAL_MS ?? 250);
const WARMUP_S = Number(process.env.BENCH_WARMUP ?? 3);
const DURATION_S = Number(process.env.BENCH_DURATION ?? 20);
/** After the last write, how long the clients may take to receive what was written. */
const DRAIN_MS = 5_000;
/** Streams opened at once (each opening reads the database). */
const OPEN_CONCURRENCY = 50;
/** The contract's largest step count: the progress total of every generation. */
const TOTAL_STEPS = 150;
const WORKER_ID = 'bench-worker';

const LATENCY_P95_GOAL_MS = 100;

const ALL_KEY_STREAMS = KEYS * KEY_STREAMS_PER_KEY;
const GENERATION_STREAMS = STREAMS - ALL_KEY_STREAMS;
if (GENERATION_STREAMS < GENERATIONS || KEYS > GENERATIONS) {
  throw new Error(
    `BENCH_STREAMS ${STREAMS} leaves ${GENERATION_STREAMS} per-generation streams for ${GENERATIONS} generations of ${KEYS} keys`,
  );
}
const stepsNeeded = Math.ceil(((WARMUP_S + DURATION_S) * 1000) / INTERVAL_MS) + 2;
if (stepsNeeded > TOTAL_STEPS) {
  throw new Error(
    `${WARMUP_S + DURATION_S} s at one step every ${INTERVAL_MS} ms needs ${stepsNeeded} steps; a generation has ${TOTAL_STEPS}`,
  );
}

/** Resolves with `promise`, or fails after `ms` saying what it waited for. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
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

/** Polls `done` every 50 ms until it holds; fails after `ms` with `describe()`'s account. */
async function waitUntil(done: () => boolean, ms: number, describe: () => string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms: ${describe()}`);
    await sleep(50);
  }
}

function rssKiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match?.[1]) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]);
}

const mib = (kib: number) => round(kib / 1024, 1);

interface Generation {
  id: string;
  keyIndex: number;
  /** Commit time (performance.now(), after recordProgress resolved) of each step; index = step. */
  committedAt: number[];
  /** When each step's write was sent. */
  sentAt: number[];
}

interface Stream {
  path: string;
  /** The generations it shows: one, or all of its key's. */
  follows: string[];
  abort: AbortController;
  /** Per followed generation: when each step was first received (index = step). */
  received: Map<string, number[]>;
  /** Generations seen running (the claim's `generation.started`). */
  started: Set<string>;
  /** The opening state has arrived (the first event, or /v1/events' id-only block). */
  opened: boolean;
  ended: boolean;
  error?: string;
  done: Promise<void>;
}

/** Receipt times of every event (any stream, any type): the delivered rate is counted from these. */
const eventTimes: number[] = [];

interface StreamEventData {
  type: string;
  generation: { id: string; status: string; progress: { step: number; total: number } | null };
}

async function readStream(stream: Stream, body: ReadableStream<Uint8Array>): Promise<void> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body) {
    // One clock reading per chunk: every event in it arrived together.
    const at = performance.now();
    buffer += decoder.decode(chunk, { stream: true });
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let data: string | undefined;
      let hasId = false;
      for (const line of block.split('\n')) {
        if (line.startsWith('data: ')) data = line.slice(6);
        else if (line.startsWith('id:')) hasId = true;
      }
      if (data === undefined) {
        // The id-only block that ends /v1/events' opening state.
        if (hasId) stream.opened = true;
        continue;
      }
      stream.opened = true;
      eventTimes.push(at);
      const event = JSON.parse(data) as StreamEventData;
      const { id, status, progress } = event.generation;
      if (status !== 'running') continue;
      stream.started.add(id);
      if (!progress) continue;
      const steps = stream.received.get(id);
      if (steps && steps[progress.step] === undefined) steps[progress.step] = at;
    }
  }
}

const work = await mkdtemp(join(tmpdir(), 'easel-bench-events-'));
const database = await createTestDatabase('bench_events');
const s3 = await startS3ServerProcess();
let api: ServiceProcess | undefined;
/** The bench's "worker" connections, apart from the harness's handle. */
let workerDb: Db | undefined;
const streams: Stream[] = [];
/** Every stream's, also one whose response has not come yet. */
const aborts: AbortController[] = [];
let stopWriters = false;
const writers: Promise<void>[] = [];

try {
  await registerDemoModel(database.db);
  const keys = await Promise.all(
    Array.from({ length: KEYS }, (_, i) => createApiKey(database.db, { name: `bench-events-${i}` })),
  );
  api = await startService({
    name: 'api',
    env: {
      ...process.env,
      DATABASE_URL: database.url,
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: 'easel-bench',
      EASEL_DATA_DIR: work,
      PORT: '0',
      // As production runs it; also the level that logs the ready line startService waits for.
      LOG_LEVEL: 'info',
      DEFAULT_MODEL: DEMO_MODEL_ID,
      // Every stream may be one key's, whatever the layout.
      MAX_STREAMS_PER_KEY: String(STREAMS),
      MAX_IN_FLIGHT_PER_KEY: String(GENERATIONS),
    },
  });
  const apiPid = api.child.pid;
  if (apiPid === undefined) throw new Error('the API process has no pid');
  const baseUrl = String(api.ready.url);
  workerDb = createDb(database.url, { max: 10, applicationName: 'easel-bench-worker' });

  // The generations, created as a client does; generation i belongs to key i % KEYS.
  const generations: Generation[] = [];
  for (let i = 0; i < GENERATIONS; i++) {
    const keyIndex = i % KEYS;
    const res = await fetch(`${baseUrl}/v1/generations`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${keys[keyIndex]?.key}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        prompt: 'a lighthouse at dusk, oil painting',
        width: 512,
        height: 512,
        steps: TOTAL_STEPS,
        seed: i,
      }),
      signal: AbortSignal.timeout(30_000),
    });
    if (res.status !== 202) throw new Error(`create answered ${res.status}: ${await res.text()}`);
    const { id } = (await res.json()) as { id: string };
    generations.push({ id, keyIndex, committedAt: [], sentAt: [] });
  }
  const byKey = keys.map((_, k) => generations.filter((g) => g.keyIndex === k).map((g) => g.id));

  // The API at rest: started, has served the creates, no stream open.
  await sleep(1000);
  const rssIdleKiB = rssKiB(apiPid);

  // The streams: GENERATION_STREAMS spread over the generations, then KEY_STREAMS_PER_KEY per key
  // on /v1/events.
  const plans: { path: string; keyIndex: number; follows: string[] }[] = [];
  for (let j = 0; j < GENERATION_STREAMS; j++) {
    const g = generations[j % GENERATIONS] as Generation;
    plans.push({ path: `/v1/generations/${g.id}/events`, keyIndex: g.keyIndex, follows: [g.id] });
  }
  for (let k = 0; k < KEYS; k++) {
    for (let j = 0; j < KEY_STREAMS_PER_KEY; j++) {
      plans.push({ path: '/v1/events', keyIndex: k, follows: byKey[k] ?? [] });
    }
  }

  const openStream = async (plan: (typeof plans)[number]): Promise<void> => {
    const abort = new AbortController();
    aborts.push(abort);
    const res = await within(
      fetch(`${baseUrl}${plan.path}`, {
        headers: { authorization: `Bearer ${keys[plan.keyIndex]?.key}`, accept: 'text/event-stream' },
        signal: abort.signal,
      }),
      30_000,
      `the response to GET ${plan.path}`,
    );
    if (res.status !== 200 || !res.body) {
      abort.abort();
      throw new Error(`GET ${plan.path} answered ${res.status}: ${await res.text().catch(() => '')}`);
    }
    const stream: Stream = {
      path: plan.path,
      follows: plan.follows,
      abort,
      received: new Map(plan.follows.map((id): [string, number[]] => [id, []])),
      started: new Set(),
      opened: false,
      ended: false,
      done: Promise.resolve(),
    };
    stream.done = readStream(stream, res.body)
      .catch((error: unknown) => {
        if (!abort.signal.aborted) stream.error = String(error);
      })
      .finally(() => {
        stream.ended = true;
      });
    streams.push(stream);
  };

  const openStarted = performance.now();
  let nextPlan = 0;
  await within(
    Promise.all(
      Array.from({ length: OPEN_CONCURRENCY }, async () => {
        while (nextPlan < plans.length) await openStream(plans[nextPlan++] as (typeof plans)[number]);
      }),
    ),
    120_000,
    `${STREAMS} streams to open`,
  );
  const live = () => streams.filter((s) => !s.ended);
  await waitUntil(
    () => streams.every((s) => s.opened || s.ended),
    30_000,
    () => `${streams.filter((s) => !s.opened).length} streams without their opening state`,
  );
  const openMs = performance.now() - openStarted;
  if (live().length !== STREAMS) {
    throw new Error(`${STREAMS - live().length} streams ended early: ${streams.find((s) => s.error)?.error}`);
  }
  const rssOpenKiB = rssKiB(apiPid);

  // The claims, as a worker makes them: every stream sees its generations start.
  for (const g of generations) {
    const claimed = await markRunning(workerDb, g.id, WORKER_ID);
    if (!claimed) throw new Error(`could not claim ${g.id}`);
  }
  await waitUntil(
    () => streams.every((s) => s.follows.every((id) => s.started.has(id))),
    30_000,
    () =>
      `${streams.filter((s) => !s.follows.every((id) => s.started.has(id))).length} streams have not seen all their generations start`,
  );

  // The progress writes: one loop per generation, as each worker runs its own; at most one write
  // in flight per generation, a late write not made up for (the next is due an interval on).
  const writeErrors: string[] = [];
  const progressStarted = performance.now();
  let writes = 0;
  for (const [i, g] of generations.entries()) {
    writers.push(
      (async () => {
        let due = progressStarted + (i / GENERATIONS) * INTERVAL_MS;
        for (let step = 1; step <= TOTAL_STEPS && !stopWriters; step++) {
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait);
          if (stopWriters) break;
          const db = workerDb as Db;
          g.sentAt[step] = performance.now();
          const state = await recordProgress(db, g.id, { step, total: TOTAL_STEPS, stepMs: INTERVAL_MS });
          g.committedAt[step] = performance.now();
          writes++;
          if (!state) throw new Error(`${g.id} is no longer running`);
          due = Math.max(due + INTERVAL_MS, performance.now());
        }
      })().catch((error: unknown) => {
        writeErrors.push(String(error));
      }),
    );
  }

  await sleep(WARMUP_S * 1000);
  const windowStart = performance.now();
  const writesAtStart = writes;
  const cpuStart = cpuSnapshot({ pids: { api: apiPid }, commands: ['postgres'], self: 'bench' });
  const rssSamples: number[] = [];
  const windowEnd = windowStart + DURATION_S * 1000;
  while (performance.now() < windowEnd) {
    await sleep(Math.min(1000, Math.max(0, windowEnd - performance.now())));
    rssSamples.push(rssKiB(apiPid));
  }
  const cpuEnd = cpuSnapshot({ pids: { api: apiPid }, commands: ['postgres'], self: 'bench' });
  const windowActualEnd = performance.now();
  const writesInWindow = writes - writesAtStart;
  const rssLoadedKiB = rssKiB(apiPid);
  const openAtEnd = live().length;
  stopWriters = true;
  await within(Promise.all(writers), 30_000, 'the progress writers to stop');
  if (writeErrors.length) throw new Error(`progress writes failed: ${writeErrors.slice(0, 3).join('; ')}`);

  // Steps written in the window, and who should see them.
  const inWindow = (at: number | undefined) => at !== undefined && at >= windowStart && at <= windowActualEnd;
  const generationOf = new Map(generations.map((g) => [g.id, g]));
  const expected = () => {
    let missing = 0;
    for (const s of streams) {
      if (s.ended) continue;
      for (const id of s.follows) {
        const g = generationOf.get(id) as Generation;
        const got = s.received.get(id) ?? [];
        g.committedAt.forEach((at, step) => {
          if (inWindow(at) && got[step] === undefined) missing++;
        });
      }
    }
    return missing;
  };
  // Let what was written reach the clients; steps the hub collapsed never come, hence the cap.
  const drainStart = performance.now();
  let lastMissing = expected();
  while (performance.now() - drainStart < DRAIN_MS) {
    await sleep(250);
    const missing = expected();
    if (missing === 0 || (missing === lastMissing && performance.now() - drainStart > 1000)) break;
    lastMissing = missing;
  }

  const latencies: number[] = [];
  const latenciesFromSend: number[] = [];
  const latenciesByPath = { generation: [] as number[], key: [] as number[] };
  let pairsExpected = 0;
  let pairsSkipped = 0;
  let skippedPerGenerationStream = 0;
  let expectedPerGenerationStream = 0;
  for (const s of streams) {
    if (s.ended) continue;
    const perKey = s.path === '/v1/events';
    for (const id of s.follows) {
      const g = generationOf.get(id) as Generation;
      const got = s.received.get(id) ?? [];
      g.committedAt.forEach((at, step) => {
        if (!inWindow(at)) return;
        pairsExpected++;
        if (!perKey) expectedPerGenerationStream++;
        const receivedAt = got[step];
        if (receivedAt === undefined) {
          pairsSkipped++;
          if (!perKey) skippedPerGenerationStream++;
          return;
        }
        latencies.push(receivedAt - at);
        latenciesByPath[perKey ? 'key' : 'generation'].push(receivedAt - at);
        latenciesFromSend.push(receivedAt - (g.sentAt[step] as number));
      });
    }
  }
  const windowSeconds = (windowActualEnd - windowStart) / 1000;
  const delivered = eventTimes.filter((t) => t >= windowStart && t <= windowActualEnd).length;
  const eventsPerSecond = delivered / windowSeconds;
  const writesPerSecond = writesInWindow / windowSeconds;
  const cpu = cpuBetween(cpuStart, cpuEnd);
  const p50 = percentile(latencies, 50);
  const p95 = percentile(latencies, 95);
  const p99 = percentile(latencies, 99);
  const skippedFraction = pairsSkipped / Math.max(1, pairsExpected);
  const rssPeakKiB = Math.max(rssLoadedKiB, ...rssSamples);

  const layout =
    `${GENERATION_STREAMS} on GET /v1/generations/{id}/events (${round(GENERATION_STREAMS / GENERATIONS, 1)} per generation), ` +
    `${ALL_KEY_STREAMS} on GET /v1/events (${KEY_STREAMS_PER_KEY} per key × ${KEYS} keys, ${round(GENERATIONS / KEYS, 1)} generations each)`;
  const rows: BenchRow[] = [
    {
      metric: 'streams open on one API process',
      value: openAtEnd,
      unit: '',
      goal: `${STREAMS}`,
      met: openAtEnd === STREAMS,
      note: `${layout}; all ${STREAMS} opened in ${round(openMs / 1000, 1)} s, ${OPEN_CONCURRENCY} at a time`,
    },
    {
      metric: 'events delivered/s across all streams',
      value: round(eventsPerSecond, 0),
      unit: 'events/s',
      note: `${delivered} events in ${round(windowSeconds, 1)} s; ${GENERATIONS} running generations each writing a step every ${INTERVAL_MS} ms (${round(writesPerSecond, 1)} progress writes/s)`,
    },
    {
      metric: 'progress write → client event latency p50',
      value: round(p50, 1),
      unit: 'ms',
    },
    {
      metric: 'progress write → client event latency p95',
      value: round(p95, 1),
      unit: 'ms',
      goal: `≤ ${LATENCY_P95_GOAL_MS} ms`,
      met: p95 <= LATENCY_P95_GOAL_MS,
      note:
        `${latencies.length} receipts; from recordProgress resolved (committed) to the client's read of the event; ` +
        `p99 ${round(p99, 1)} ms, max ${round(Math.max(...latencies), 1)} ms; p95 on per-generation streams ` +
        `${round(percentile(latenciesByPath.generation, 95), 1)} ms, on /v1/events ${round(percentile(latenciesByPath.key, 95), 1)} ms; counted from the write sent: ` +
        `p50 ${round(percentile(latenciesFromSend, 50), 1)}, p95 ${round(percentile(latenciesFromSend, 95), 1)} ms`,
    },
    {
      metric: 'steps skipped (collapsed by the hub or lost)',
      value: round(skippedFraction, 4),
      unit: '',
      note: `${pairsSkipped} of ${pairsExpected} (stream, step) receipts never came, ${skippedPerGenerationStream} of ${expectedPerGenerationStream} on per-generation streams; by design a step replaced before the hub reads it is not sent`,
    },
    {
      metric: 'API RSS, no stream open',
      value: mib(rssIdleKiB),
      unit: 'MiB',
    },
    {
      metric: `API RSS, ${openAtEnd} streams open under load`,
      value: mib(rssLoadedKiB),
      unit: 'MiB',
      note:
        `at the window's end; ${mib(rssOpenKiB)} MiB right after opening, before any progress ` +
        `(≈ ${round((rssOpenKiB - rssIdleKiB) / Math.max(1, STREAMS), 1)} KiB per stream over idle); under the event load it ` +
        `went from ${mib(rssSamples[0] ?? Number.NaN)} MiB at the window's first second to ${mib(rssLoadedKiB)} MiB ` +
        `(peak sampled ${mib(rssPeakKiB)} MiB; per-second samples in details.rss_kib)`,
    },
    {
      metric: 'API CPU during the window',
      value: cpu.api_cores ?? Number.NaN,
      unit: 'cores',
      note: `this bench process (${STREAMS} clients + the progress writes) ${cpu.bench_cores ?? '?'} cores, all postgres processes ${cpu.postgres_cores ?? '?'} cores, machine busy ${round((cpu.machine_busy_share ?? Number.NaN) * 100, 0)} %`,
    },
  ];
  const result = {
    name: 'event-streams',
    machine: machineDescription(SHARED_CORES_CAVEAT),
    date: new Date().toISOString(),
    rows,
    details: {
      streams: STREAMS,
      generations: GENERATIONS,
      keys: KEYS,
      key_streams_per_key: KEY_STREAMS_PER_KEY,
      progress_interval_ms: INTERVAL_MS,
      warmup_s: WARMUP_S,
      window_s: round(windowSeconds, 2),
      writes_in_window: writesInWindow,
      events_in_window: delivered,
      latency_ms: {
        p50: round(p50, 2),
        p95: round(p95, 2),
        p99: round(p99, 2),
        max: round(Math.max(...latencies), 2),
      },
      latency_p95_ms_by_stream: {
        generation_events: round(percentile(latenciesByPath.generation, 95), 2),
        all_events: round(percentile(latenciesByPath.key, 95), 2),
      },
      latency_from_send_ms: {
        p50: round(percentile(latenciesFromSend, 50), 2),
        p95: round(percentile(latenciesFromSend, 95), 2),
        p99: round(percentile(latenciesFromSend, 99), 2),
      },
      skipped: { pairs_expected: pairsExpected, pairs_skipped: pairsSkipped },
      rss_kib: { idle: rssIdleKiB, opened: rssOpenKiB, loaded: rssLoadedKiB, samples: rssSamples },
      cpu,
      api_pid: apiPid,
    },
  };
  const path = await writeResult(result);
  console.log(`\nEvent streams — ${result.machine}\n`);
  console.log(markdownTable([result]));
  console.log(`\nwritten: ${path}`);
} finally {
  stopWriters = true;
  for (const abort of aborts) abort.abort();
  await within(Promise.all(streams.map((s) => s.done)), 10_000, 'the streams to close').catch(
    (error: unknown) => console.error(String(error)),
  );
  await within(Promise.all(writers), 10_000, 'the progress writers to stop').catch((error: unknown) =>
    console.error(String(error)),
  );
  await api?.stop();
  await workerDb?.destroy();
  await s3.stop();
  await database.drop();
  await rm(work, { recursive: true, force: true });
}
