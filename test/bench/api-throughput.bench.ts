// API throughput benchmark: POST /v1/generations on the real API process (api/main.ts, as
// deployed: its own process, LOG_LEVEL=info, auth, admission checks, row + pg-boss job in one
// transaction, queue position) against a bare Hono handler doing only the same single INSERT
// (test/bench/bare-insert.server.ts, also its own process, same pool size).
//   goals: api req/s ÷ bare req/s ≥ 0.7, API p99 ≤ 50 ms, every request answered 2xx.
// Each server gets a warm-up, then the tables are emptied so both are measured from the same
// empty queue; no worker runs, so rows (and for the API, jobs) accumulate during the run. The
// API is then run again at half the rate it reached, requests arriving steadily (open loop), for
// its latency when not saturated (flat out, Little's law makes latency ≈ connections ÷
// throughput whatever the code does). CPU per request (server + its Postgres backends) is
// reported too, because it holds on a busy machine where req/s does not.
//   BENCH_DURATION (s, default 10), BENCH_WARMUP (s, 3), BENCH_CONNECTIONS (50)

import http from 'node:http';
import autocannon, { type Result } from 'autocannon';
import { sql } from 'kysely';
import pg from 'pg';
import { type ServiceProcess, startService } from '../../bin/local/service-process.ts';
import { createApiKey } from '../../db/api-keys.repository.ts';
import { generationQueue, PGBOSS_SCHEMA } from '../../db/queue.ts';
import { createTestDatabase, type TestDatabase } from '../harness/database.ts';
import { DEMO_MODEL_ID, registerDemoModel } from '../harness/models.ts';
import { startS3ServerProcess } from '../harness/s3-server.ts';
import {
  type BenchRow,
  backendPids,
  cpuBetween,
  cpuSnapshot,
  machineDescription,
  percentile,
  round,
  SAMPLER_APPLICATION_NAME,
  SHARED_CORES_CAVEAT,
  sleep,
  writeResult,
} from './bench-common.ts';

// The demo model's queue: every generation here runs on it.
const GENERATION_QUEUE = generationQueue(DEMO_MODEL_ID);

const DURATION_S = Number(process.env.BENCH_DURATION ?? 10);
const WARMUP_S = Number(process.env.BENCH_WARMUP ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);

const RATIO_GOAL = 0.7;
const P99_GOAL_MS = 50;

const requestBody = JSON.stringify({
  prompt: 'a lighthouse on a cliff at dawn, oil painting',
  negative_prompt: 'blurry, low quality',
  width: 512,
  height: 512,
  steps: 25,
  guidance_scale: 7.5,
  num_images: 1,
});

interface Measured {
  target: string;
  /** Open-loop runs: the rate offered; absent when each connection sends flat out. */
  offered_rps?: number;
  rps: number;
  p50_ms: number;
  p90_ms: number;
  p99_ms: number;
  max_ms: number;
  requests: number;
  ok_2xx: number;
  non_2xx: number;
  errors: number;
  timeouts: number;
  status_codes: Record<string, number>;
  /** Completed responses in each second of the run: shows whether throughput drifts as rows pile up. */
  per_second: number[];
  cpu: Record<string, number>;
  /** (server + its Postgres backends) CPU per answered request. */
  cpu_ms_per_request: number;
  /** What this database's busy connections were doing, sampled every 20 ms (share of samples). */
  postgres_activity: Record<string, number>;
  /** What the server wrote to stdout during the run (the API's pino lines). */
  log_lines: number;
  log_mb: number;
  rows_after: number;
  jobs_after: number;
}

/**
 * From now on, read the service's output without parsing it: the harness parses every line it
 * logs, which at thousands of lines a second would take CPU from the load generator in this
 * same process. Production ships the same bytes to a file or collector.
 */
function drainOutput(service: ServiceProcess) {
  const counts = { lines: 0, bytes: 0 };
  for (const stream of [service.child.stdout, service.child.stderr]) {
    if (!stream) continue;
    stream.removeAllListeners('data');
    stream.on('data', (chunk: Buffer) => {
      counts.bytes += chunk.length;
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) counts.lines++;
    });
  }
  return counts;
}

/**
 * Samples what this database's connections are doing while the load runs: which statement and
 * which wait event, so a result that misses its goal says where the time went.
 */
function sampleActivity(database: TestDatabase) {
  const counts = new Map<string, number>();
  let samples = 0;
  let running = true;
  const client = new pg.Client({
    connectionString: database.url,
    application_name: SAMPLER_APPLICATION_NAME,
  });
  const done = (async () => {
    await client.connect();
    while (running) {
      const { rows } = await client.query<{ state: string; wait: string | null; query: string }>(
        `select state, wait_event_type || ':' || wait_event as wait, left(regexp_replace(query, '\\s+', ' ', 'g'), 60) as query
         from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid() and state <> 'idle'`,
      );
      samples++;
      for (const row of rows) {
        const key = `${row.state} | ${row.wait ?? 'on CPU'} | ${row.query}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      await sleep(20);
    }
    await client.end();
  })();
  return async () => {
    running = false;
    await done;
    // Average number of connections in each (state, wait, statement) over the run.
    return Object.fromEntries(
      [...counts.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 12)
        .map(([key, n]) => [key, round(n / Math.max(1, samples), 2)]),
    );
  };
}

interface LoadResult {
  seconds: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  latency: { p50: number; p90: number; p99: number; max: number };
}

/** Each of CONNECTIONS connections sends its next request as soon as it has its answer (autocannon). */
async function closedLoop(
  service: ServiceProcess,
  headers: Record<string, string>,
  seconds: number,
  perSecond?: number[],
): Promise<LoadResult> {
  const started = performance.now();
  const instance = autocannon({
    url: `${String(service.ready.url)}/v1/generations`,
    method: 'POST',
    headers,
    body: requestBody,
    connections: CONNECTIONS,
    duration: seconds,
    timeout: 10,
  });
  if (perSecond) {
    instance.on('response', () => {
      const second = Math.floor((performance.now() - started) / 1000);
      perSecond[second] = (perSecond[second] ?? 0) + 1;
    });
  }
  const result = await new Promise<Result>((resolve, reject) => instance.then(resolve, reject));
  return {
    seconds: result.duration,
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes: Object.fromEntries(
      Object.entries(result.statusCodeStats).map(([code, s]) => [code, s.count]),
    ),
    latency: result.latency,
  };
}

/**
 * Requests sent at a steady rate whatever the answers do (open loop), each timed from when it
 * was due, so a stalled server is not hidden by the load generator waiting for it. (autocannon's
 * own rate limit releases each second's requests in a burst, which measures bursts instead.)
 */
async function openLoop(
  service: ServiceProcess,
  headers: Record<string, string>,
  rate: number,
  seconds: number,
  perSecond: number[],
): Promise<LoadResult> {
  const url = new URL(`${String(service.ready.url)}/v1/generations`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const out: LoadResult = {
    seconds,
    ok: 0,
    non2xx: 0,
    errors: 0,
    timeouts: 0,
    statusCodes: {},
    latency: { p50: 0, p90: 0, p99: 0, max: 0 },
  };
  const latencies: number[] = [];
  const started = performance.now();
  const send = (due: number) =>
    new Promise<void>((resolve) => {
      let settled = false;
      const settle = (what: 'ok' | 'error' | 'timeout', status?: number) => {
        if (settled) return;
        settled = true;
        const end = performance.now();
        if (what === 'timeout') out.timeouts++;
        else if (what === 'error') out.errors++;
        else if (status !== undefined) {
          out.statusCodes[status] = (out.statusCodes[status] ?? 0) + 1;
          if (status >= 200 && status < 300) out.ok++;
          else out.non2xx++;
          latencies.push(end - due);
          const second = Math.floor((end - started) / 1000);
          perSecond[second] = (perSecond[second] ?? 0) + 1;
        }
        resolve();
      };
      const req = http.request(
        {
          agent,
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          headers: { ...headers, 'content-length': Buffer.byteLength(requestBody) },
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          res.on('end', () => settle('ok', res.statusCode));
          res.on('error', () => settle('error'));
        },
      );
      req.on('timeout', () => {
        settle('timeout');
        req.destroy();
      });
      req.on('error', () => settle('error'));
      req.end(requestBody);
    });
  const pending: Promise<void>[] = [];
  const total = Math.round(rate * seconds);
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait >= 1) await sleep(wait);
    pending.push(send(due));
  }
  await Promise.all(pending);
  agent.destroy();
  out.seconds = (performance.now() - started) / 1000;
  out.latency = {
    p50: round(percentile(latencies, 50), 1),
    p90: round(percentile(latencies, 90), 1),
    p99: round(percentile(latencies, 99), 1),
    max: round(percentile(latencies, 100), 1),
  };
  return out;
}

const database = await createTestDatabase('bench_api');
const s3 = await startS3ServerProcess();
const { db } = database;
const services: ServiceProcess[] = [];
let cleaning: Promise<void> | undefined;
const cleanup = () =>
  (cleaning ??= (async () => {
    await Promise.allSettled(services.map((s) => s.stop()));
    await s3.stop();
    await database.drop();
  })());
// Interrupted (Ctrl-C, the runner killed): still stop the servers and drop the database.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void cleanup().finally(() => process.exit(130)));
}
try {
  const { key, apiKey } = await createApiKey(db, { name: 'bench' });
  // The model the creates run on, as its worker would announce it.
  await registerDemoModel(db);
  const { rows: versionRows } = await sql<{ v: string }>`
    select current_setting('server_version') as v`.execute(db);
  const machine = machineDescription(`PostgreSQL ${versionRows[0]?.v ?? '?'}`);
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const baseEnv = { ...process.env, DATABASE_URL: database.url, PORT: '0' };

  const countRows = async () => {
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from generations`.execute(db);
    return rows[0]?.n ?? 0;
  };
  const jobTableExists = async () => {
    const { rows } = await sql<{ t: string | null }>`
      select to_regclass(${`${PGBOSS_SCHEMA}.job`})::text as t`.execute(db);
    return rows[0]?.t != null;
  };
  // Zero before any pg-boss has created its schema (the bare server never does).
  const countJobs = async () => {
    if (!(await jobTableExists())) return 0;
    const { rows } = await sql<{ n: number }>`
      select count(*)::int as n from ${sql.table(`${PGBOSS_SCHEMA}.job`)} where name = ${GENERATION_QUEUE}`.execute(
      db,
    );
    return rows[0]?.n ?? 0;
  };
  // Both servers start their measured run from an empty queue.
  const reset = async () => {
    await sql`truncate generations cascade`.execute(db);
    if (await jobTableExists()) {
      await sql`delete from ${sql.table(`${PGBOSS_SCHEMA}.job`)} where name = ${GENERATION_QUEUE}`.execute(
        db,
      );
    }
    await sql`vacuum analyze generations`.execute(db);
  };

  const targets = [
    {
      name: 'bare',
      start: () =>
        startService({
          name: 'bare',
          script: 'test/bench/bare-insert.server.ts',
          env: { ...baseEnv, API_KEY_ID: apiKey.id },
          readyMsg: 'bare listening',
        }),
    },
    {
      name: 'api',
      start: () =>
        startService({
          name: 'api',
          env: {
            ...baseEnv,
            S3_ENDPOINT: s3.endpoint,
            S3_BUCKET: 'easel-bench',
            // As production runs it (one JSON line per request plus one per queued generation);
            // it is also the level that logs the ready line startService waits for.
            LOG_LEVEL: 'info',
            // No worker drains the queue during the run: caps high enough that no create is refused.
            MAX_IN_FLIGHT_PER_KEY: '1000000',
            MAX_QUEUED: '10000000',
          },
        }),
    },
  ];

  /** Waits until rows stop arriving: requests a closed connection left queued have landed. */
  const settle = async () => {
    for (let last = -1, n = await countRows(); n !== last; ) {
      await sleep(500);
      [last, n] = [n, await countRows()];
    }
  };

  async function measure(
    target: string,
    service: ServiceProcess,
    output: { lines: number; bytes: number },
    rate?: number,
  ): Promise<Measured> {
    await settle();
    await reset();
    const logBefore = { ...output };
    const perSecond: number[] = [];
    const pids = () => backendPids((text) => sql.raw<{ pid: number }>(text).execute(db));
    const probe = {
      pids: { server: service.child.pid },
      commands: ['postgres'],
      self: 'load_generator',
    };
    const stopSampling = sampleActivity(database);
    const before = cpuSnapshot({ ...probe, groups: { postgres_this_db: await pids() } });
    const result = rate
      ? await openLoop(service, headers, rate, DURATION_S, perSecond)
      : await closedLoop(service, headers, DURATION_S, perSecond);
    const after = cpuSnapshot({ ...probe, groups: { postgres_this_db: await pids() } });
    const activity = await stopSampling();
    await settle();
    const { ok } = result;
    const cpu = cpuBetween(before, after);
    const rps = round(ok / result.seconds, 1);
    return {
      target,
      offered_rps: rate,
      rps,
      p50_ms: result.latency.p50,
      p90_ms: result.latency.p90,
      p99_ms: result.latency.p99,
      max_ms: result.latency.max,
      requests: ok + result.non2xx,
      ok_2xx: ok,
      non_2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      status_codes: result.statusCodes,
      per_second: perSecond.slice(0, Math.floor(DURATION_S)),
      cpu,
      cpu_ms_per_request: round(
        (((cpu.server_cores ?? Number.NaN) + (cpu.postgres_this_db_cores ?? Number.NaN)) / rps) * 1000,
        3,
      ),
      postgres_activity: activity,
      log_lines: output.lines - logBefore.lines,
      log_mb: round((output.bytes - logBefore.bytes) / 2 ** 20, 1),
      rows_after: await countRows(),
      jobs_after: await countJobs(),
    };
  }

  const measured: Measured[] = [];
  for (const target of targets) {
    const service = await target.start();
    services.push(service);
    const output = drainOutput(service);
    process.stderr.write(
      `${target.name}: warm-up ${WARMUP_S} s, then ${DURATION_S} s × ${CONNECTIONS} connections\n`,
    );
    await closedLoop(service, headers, WARMUP_S);
    const saturated = await measure(target.name, service, output);
    measured.push(saturated);
    if (target.name === 'api') {
      // Latency at a load the API can carry: half its own maximum, arriving steadily.
      const rate = Math.max(1, Math.round(saturated.rps / 2));
      process.stderr.write(`api: ${DURATION_S} s at ${rate} req/s offered\n`);
      measured.push(await measure('api @ half its max rate', service, output, rate));
    }
    await service.stop();
    services.splice(services.indexOf(service), 1);
  }

  const [bare, api, paced] = measured as [Measured, Measured, Measured];
  const ratio = round(api.rps / bare.rps, 3);
  // Every accepted create must have left its row and its job, and every row its job.
  const apiRuns = [api, paced];
  const failures = apiRuns.reduce((n, m) => n + m.non_2xx + m.errors + m.timeouts, 0);
  const requests = apiRuns.reduce((n, m) => n + m.requests, 0);
  const rowsWithoutJob = apiRuns.reduce((n, m) => n + Math.abs(m.rows_after - m.jobs_after), 0);
  const rowsShort = apiRuns.some((m) => m.rows_after < m.ok_2xx);
  const rows: BenchRow[] = [
    { metric: 'bare handler throughput', value: bare.rps, unit: 'req/s' },
    { metric: 'bare handler p99 latency', value: bare.p99_ms, unit: 'ms' },
    { metric: 'API throughput', value: api.rps, unit: 'req/s' },
    {
      metric: 'API ÷ bare throughput',
      value: ratio,
      unit: '',
      goal: `≥ ${RATIO_GOAL}`,
      met: ratio >= RATIO_GOAL,
    },
    {
      metric: `API p99 latency, ${CONNECTIONS} connections flat out`,
      value: api.p99_ms,
      unit: 'ms',
      goal: `≤ ${P99_GOAL_MS} ms`,
      met: api.p99_ms <= P99_GOAL_MS,
    },
    {
      metric: `API p99 latency at ${paced.offered_rps} req/s offered`,
      value: paced.p99_ms,
      unit: 'ms',
      note: 'half its max',
    },
    {
      metric: 'CPU per create, API process + its Postgres backends',
      value: api.cpu_ms_per_request,
      unit: 'ms',
      note: `bare: ${bare.cpu_ms_per_request} ms`,
    },
    {
      metric: 'API non-2xx responses + errors',
      value: failures,
      unit: '',
      goal: '0',
      met: failures === 0,
      note: `of ${requests}`,
    },
    {
      metric: 'API rows without a job (or jobs without a row)',
      value: rowsWithoutJob,
      unit: '',
      goal: '0',
      met: rowsWithoutJob === 0 && !rowsShort,
    },
  ];
  const setup = `${CONNECTIONS} connections, ${DURATION_S} s after a ${WARMUP_S} s warm-up, API LOG_LEVEL=info; ${SHARED_CORES_CAVEAT}`;
  console.log(`\nAPI throughput, POST /v1/generations — ${machine}\n${setup}\n`);
  console.log(
    '| server | req/s | p50 ms | p99 ms | max ms | 2xx | non-2xx | errors | server cores | postgres cores (this db / all) | CPU ms per request | load-gen cores | machine busy |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const m of measured) {
    console.log(
      `| ${m.target} | ${m.rps} | ${m.p50_ms} | ${m.p99_ms} | ${m.max_ms} | ${m.ok_2xx} | ${m.non_2xx} | ${m.errors + m.timeouts} | ${m.cpu.server_cores ?? '?'} | ${m.cpu.postgres_this_db_cores ?? '?'} / ${m.cpu.postgres_cores ?? '?'} | ${m.cpu_ms_per_request} | ${m.cpu.load_generator_cores ?? '?'} | ${m.cpu.machine_busy_share ?? '?'} |`,
    );
  }
  console.log(
    `\nratio API/bare ${ratio} (goal ≥ ${RATIO_GOAL}); API p99 ${api.p99_ms} ms (goal ≤ ${P99_GOAL_MS} ms)`,
  );
  for (const m of measured) console.log(`${m.target} req/s per second: ${m.per_second.join(' ')}`);
  for (const m of measured) {
    console.log(`\n${m.target}: busy Postgres connections on average (state | wait | statement):`);
    for (const [key, n] of Object.entries(m.postgres_activity)) console.log(`  ${n}  ${key}`);
  }
  const path = await writeResult({
    name: 'api-throughput',
    machine,
    date: new Date().toISOString(),
    rows,
    details: { setup, connections: CONNECTIONS, duration_s: DURATION_S, warmup_s: WARMUP_S, measured },
  });
  console.log(`\nwritten: ${path}`);
} finally {
  await cleanup();
}
