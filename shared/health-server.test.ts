// The metrics listener of processes without an HTTP API, over real HTTP on an ephemeral port,
// serving the webhook sender's registry (webhooks/metrics.ts). No database: nothing here
// touches one.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { ERROR_CATALOGUE, problemType } from '../api/errors.ts';
import { loadWorkerConfig } from '../gpu-worker/config.ts';
import { loadSenderConfig } from '../webhooks/config.ts';
import { createSenderMetrics } from '../webhooks/metrics.ts';
import {
  closeHealthServer,
  healthServerUrl,
  type ReadinessReport,
  startHealthServer,
} from './health-server.ts';
import { NotReadyProblem, ReadyBody } from './readiness.ts';

const servers: Parameters<typeof closeHealthServer>[0][] = [];
after(async () => {
  for (const server of servers) await closeHealthServer(server);
});

async function serve(options: Omit<Parameters<typeof startHealthServer>[0], 'port' | 'host'>) {
  const server = await startHealthServer({ ...options, port: 0, host: '127.0.0.1' });
  servers.push(server);
  return healthServerUrl(server);
}

test('serves the webhook sender registry: attempts and their duration by outcome', async () => {
  const metrics = createSenderMetrics();
  const url = await serve({ registry: metrics.registry });
  metrics.observeAttempt({ kind: 'delivered', latencyMs: 40 });
  metrics.observeAttempt({ kind: 'delivered', latencyMs: 60 });
  metrics.observeAttempt({ kind: 'retry', latencyMs: 1500 });

  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  assert.match(text, /^easel_webhook_attempts_total\{outcome="delivered"\} 2$/m);
  assert.match(text, /^easel_webhook_attempts_total\{outcome="retry"\} 1$/m);
  // Every outcome is there from the start.
  for (const outcome of ['gone', 'rejected', 'forbidden']) {
    assert.match(text, new RegExp(`^easel_webhook_attempts_total\\{outcome="${outcome}"\\} 0$`, 'm'));
  }
  assert.match(text, /^easel_webhook_attempt_duration_seconds_count\{outcome="delivered"\} 2$/m);
  assert.match(text, /^easel_webhook_attempt_duration_seconds_sum\{outcome="delivered"\} 0\.1$/m);
  assert.match(text, /^easel_webhook_attempt_duration_seconds_bucket\{le="0\.05",outcome="delivered"\} 1$/m);
  assert.match(text, /^easel_webhook_attempt_duration_seconds_bucket\{le="1",outcome="retry"\} 0$/m);
  assert.match(text, /^easel_webhook_attempt_duration_seconds_bucket\{le="2\.5",outcome="retry"\} 1$/m);
  assert.match(text, /^process_cpu_user_seconds_total /m, 'default metrics');
});

test('/healthz is 200; /readyz is 404 without a readiness callback; anything else 404, non-GET 405', async () => {
  const url = await serve({ registry: new Registry() });
  const health = await fetch(`${url}/healthz`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { status: 'ok' });
  assert.equal((await fetch(`${url}/readyz`)).status, 404);
  const missing = await fetch(`${url}/nothing`);
  assert.equal(missing.status, 404);
  assert.equal(missing.headers.get('content-type'), 'application/problem+json');
  assert.equal(((await missing.json()) as { code: string }).code, 'not_found');
  const post = await fetch(`${url}/metrics`, { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  // A query string does not change the path.
  assert.equal((await fetch(`${url}/healthz?probe=1`)).status, 200);
});

test('/readyz follows the readiness callback in the shape the API answers: ready, not ready, failing, too slow', async () => {
  let answer: () => ReadinessReport | Promise<ReadinessReport> = () => ({
    checks: { queue: 'starting', database: 'ok' },
  });
  const url = await serve({ registry: new Registry(), readiness: () => answer(), readinessTimeoutMs: 200 });

  // Not ready: 503 problem+json naming the failed checks, like the API's /readyz (api/health.routes.ts).
  const starting = await fetch(`${url}/readyz`);
  assert.equal(starting.status, 503);
  assert.equal(starting.headers.get('content-type'), 'application/problem+json');
  const notReady = NotReadyProblem.parse(await starting.json());
  assert.deepEqual(notReady, {
    type: problemType('service_unavailable'),
    title: ERROR_CATALOGUE.service_unavailable.title,
    status: 503,
    detail: 'Not ready: queue.',
    code: 'service_unavailable',
    instance: '/readyz',
    checks: { queue: 'starting', database: 'ok' },
  });

  // Ready: every check `ok`; a process's own members come along.
  answer = async () => ({ checks: { database: 'ok' }, details: { worker_id: 'w1', jobs_in_hand: 0 } });
  const ready = await fetch(`${url}/readyz`);
  assert.equal(ready.status, 200);
  const body = await ready.json();
  assert.deepEqual(body, { status: 'ready', checks: { database: 'ok' }, worker_id: 'w1', jobs_in_hand: 0 });
  ReadyBody.parse(body);

  // A callback that fails or hangs is one failed check, `readiness`.
  answer = async () => {
    throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
  };
  const failing = await fetch(`${url}/readyz`);
  assert.equal(failing.status, 503);
  assert.deepEqual(NotReadyProblem.parse(await failing.json()).checks, {
    readiness: 'connect ECONNREFUSED 127.0.0.1:5432',
  });

  answer = () => new Promise<ReadinessReport>(() => {});
  const slow = await fetch(`${url}/readyz`);
  assert.equal(slow.status, 503);
  assert.match(NotReadyProblem.parse(await slow.json()).checks.readiness ?? '', /no answer within 200 ms/);
  // Liveness never waits on the dependencies.
  assert.equal((await fetch(`${url}/healthz`)).status, 200);
});

test('a metric that fails to collect is a 500, and the server keeps serving', async () => {
  const registry = new Registry();
  let broken = true;
  new Counter({
    name: 'flaky_total',
    help: 'fails to collect while broken',
    registers: [registry],
    collect() {
      if (broken) throw new Error('collector failed');
    },
  });
  const url = await serve({ registry });
  assert.equal((await fetch(`${url}/metrics`)).status, 500);
  broken = false;
  assert.equal((await fetch(`${url}/metrics`)).status, 200);
});

test('a port already in use fails the start instead of serving nothing', async () => {
  const first = await startHealthServer({ registry: new Registry(), port: 0, host: '127.0.0.1' });
  servers.push(first);
  const port = Number(new URL(healthServerUrl(first)).port);
  await assert.rejects(startHealthServer({ registry: new Registry(), port, host: '127.0.0.1' }), {
    code: 'EADDRINUSE',
  });
});

test("one name for the listener's settings: HEALTH_PORT/HEALTH_HOST; the sender's METRICS_* still work, deprecated", () => {
  const base = { DATABASE_URL: 'postgres://localhost/easel' };
  const worker = loadWorkerConfig({ ...base, HEALTH_PORT: '9101', HEALTH_HOST: '0.0.0.0' }).env;
  assert.deepEqual([worker.HEALTH_PORT, worker.HEALTH_HOST], [9101, '0.0.0.0']);
  const sender = loadSenderConfig({ ...base, HEALTH_PORT: '9102', HEALTH_HOST: '0.0.0.0' });
  assert.deepEqual([sender.HEALTH_PORT, sender.HEALTH_HOST, sender.deprecated], [9102, '0.0.0.0', []]);
  const unset = loadSenderConfig(base);
  assert.deepEqual([unset.HEALTH_PORT, unset.HEALTH_HOST], [undefined, '127.0.0.1']);

  // The old names alone still configure the listener, and say they are deprecated.
  const old = loadSenderConfig({ ...base, METRICS_PORT: '9103', METRICS_HOST: '::1' });
  assert.deepEqual([old.HEALTH_PORT, old.HEALTH_HOST], [9103, '::1']);
  assert.deepEqual(old.deprecated, [
    { variable: 'METRICS_PORT', use: 'HEALTH_PORT' },
    { variable: 'METRICS_HOST', use: 'HEALTH_HOST' },
  ]);
  // Both set: the new name wins (the old one is still reported).
  const both = loadSenderConfig({ ...base, HEALTH_PORT: '9104', METRICS_PORT: '9105' });
  assert.equal(both.HEALTH_PORT, 9104);
  assert.deepEqual(both.deprecated, [{ variable: 'METRICS_PORT', use: 'HEALTH_PORT' }]);
});
