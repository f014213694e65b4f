// The metrics listener of processes without an HTTP API, over real HTTP on an ephemeral port,
// serving the webhook sender's registry (webhooks/metrics.ts). No database: nothing here
// touches one.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { createSenderMetrics } from '../webhooks/metrics.ts';
import { closeMetricsServer, metricsServerUrl, type Readiness, startMetricsServer } from './health-server.ts';

const servers: Parameters<typeof closeMetricsServer>[0][] = [];
after(async () => {
  for (const server of servers) await closeMetricsServer(server);
});

async function serve(options: Omit<Parameters<typeof startMetricsServer>[0], 'port' | 'host'>) {
  const server = await startMetricsServer({ ...options, port: 0, host: '127.0.0.1' });
  servers.push(server);
  return metricsServerUrl(server);
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

test('/readyz follows the readiness callback: ready, not ready with its details, failing, too slow', async () => {
  let answer: () => Readiness | Promise<Readiness> = () => ({ ok: false, reason: 'starting' });
  const url = await serve({ registry: new Registry(), readiness: () => answer(), readinessTimeoutMs: 200 });

  const starting = await fetch(`${url}/readyz`);
  assert.equal(starting.status, 503);
  assert.deepEqual(await starting.json(), { status: 'not_ready', reason: 'starting' });

  answer = async () => ({ ok: true, database: 'ok' });
  const ready = await fetch(`${url}/readyz`);
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { status: 'ready', database: 'ok' });

  answer = async () => {
    throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
  };
  const failing = await fetch(`${url}/readyz`);
  assert.equal(failing.status, 503);
  assert.deepEqual(await failing.json(), {
    status: 'not_ready',
    error: 'connect ECONNREFUSED 127.0.0.1:5432',
  });

  answer = () => new Promise<Readiness>(() => {});
  const slow = await fetch(`${url}/readyz`);
  assert.equal(slow.status, 503);
  assert.match(((await slow.json()) as { error: string }).error, /no answer within 200 ms/);
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
  const first = await startMetricsServer({ registry: new Registry(), port: 0, host: '127.0.0.1' });
  servers.push(first);
  const port = Number(new URL(metricsServerUrl(first)).port);
  await assert.rejects(startMetricsServer({ registry: new Registry(), port, host: '127.0.0.1' }), {
    code: 'EADDRINUSE',
  });
});
