// The webhook sender process with HEALTH_PORT set: real attempts (a receiver that accepts, one
// that is gone, one that fails, then fails a redelivery) show up on its /metrics by outcome;
// /readyz and /healthz answer.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { ServiceProcess } from '../bin/local/service-process.ts';
import { WEBHOOK_ATTEMPT_FAILED, WEBHOOK_DELIVERED } from '../shared/log-events.ts';
import { type Stack, startStack } from '../test/harness/stack.ts';
import { loadSenderConfig } from './config.ts';

let stack: Stack;
let sender: ServiceProcess;
let metricsUrl: string;
let receiver: Server;
let receiverUrl: string;

/** The status each receiver path answers with. */
const ANSWERS: Record<string, number> = { '/ok': 204, '/gone': 410, '/broken': 503 };

before(async () => {
  receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(ANSWERS[req.url ?? ''] ?? 404).end());
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;

  stack = await startStack('sender_metrics', { WEBHOOK_ALLOW_PRIVATE: 'true' });
  await stack.startApi();
  // A second attempt an hour later: nothing is retried behind the test's back.
  sender = await stack.startWebhookSender({ HEALTH_PORT: '0', WEBHOOK_RETRY_SCHEDULE: '0,3600' });
  metricsUrl = String(sender.ready.metrics_url);
});

after(async () => {
  await stack?.stop();
  receiver?.closeAllConnections();
  await new Promise((resolve) => receiver?.close(resolve));
});

/** A queued generation canceled at once: its generation.canceled event goes to `path`. */
async function cancelWithWebhook(path: string): Promise<string> {
  const created = await stack.request('/v1/generations', {
    method: 'POST',
    body: JSON.stringify({
      prompt: 'metrics',
      width: 64,
      height: 64,
      steps: 1,
      webhook_url: `${receiverUrl}${path}`,
      webhook_events: ['generation.canceled'],
    }),
  });
  assert.equal(created.status, 202, await created.clone().text());
  const { id } = (await created.json()) as { id: string };
  const canceled = await stack.request(`/v1/generations/${id}/cancel`, { method: 'POST' });
  assert.equal(canceled.status, 200);
  return id;
}

test('the ready line names the metrics URL; /healthz and /readyz answer', async () => {
  assert.match(metricsUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  const health = await fetch(`${metricsUrl}/healthz`);
  assert.equal(health.status, 200);
  const ready = await fetch(`${metricsUrl}/readyz`);
  assert.equal(ready.status, 200);
  assert.deepEqual(await ready.json(), { status: 'ready', checks: { queue: 'ok', database: 'ok' } });
});

test('each attempt is counted and timed by its outcome', async () => {
  for (const [path, outcome, msg] of [
    ['/ok', 'delivered', WEBHOOK_DELIVERED],
    ['/gone', 'gone', WEBHOOK_ATTEMPT_FAILED],
    ['/broken', 'retry', WEBHOOK_ATTEMPT_FAILED],
  ] as const) {
    const logged = sender.waitForLog(msg, (l) => l.outcome === outcome);
    const id = await cancelWithWebhook(path);
    assert.equal((await logged).generation_id, id);
  }
  // A redelivery is one attempt, never retried: its retryable failure is `exhausted`.
  const broken = (await (await stack.request('/v1/generations?limit=1')).json()) as {
    data: { id: string }[];
  };
  const log = (await (
    await stack.request(`/v1/generations/${broken.data[0]?.id}/webhook-deliveries`)
  ).json()) as { data: { id: string; outcome: string }[] };
  assert.deepEqual(
    log.data.map((d) => d.outcome),
    ['retry'],
  );
  const exhausted = sender.waitForLog(WEBHOOK_ATTEMPT_FAILED, (l) => l.outcome === 'exhausted');
  const redeliver = await stack.request(`/v1/webhook-deliveries/${log.data[0]?.id}/redeliver`, {
    method: 'POST',
  });
  assert.equal(redeliver.status, 202);
  assert.equal((await exhausted).next_attempt_at, null);

  const res = await fetch(`${metricsUrl}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  for (const [outcome, count] of [
    ['delivered', 1],
    ['gone', 1],
    ['retry', 1],
    ['exhausted', 1],
    ['rejected', 0],
    ['forbidden', 0],
  ] as const) {
    assert.match(text, new RegExp(`^easel_webhook_attempts_total\\{outcome="${outcome}"\\} ${count}$`, 'm'));
  }
  assert.match(text, /^easel_webhook_attempt_duration_seconds_count\{outcome="delivered"\} 1$/m);
  assert.match(text, /^easel_webhook_attempt_duration_seconds_count\{outcome="gone"\} 1$/m);
  assert.match(text, /^easel_webhook_attempt_duration_seconds_count\{outcome="exhausted"\} 1$/m);
  assert.doesNotMatch(text, /skipped_disabled/);
});

test('without HEALTH_PORT the sender listens on nothing; HEALTH_HOST defaults to loopback', () => {
  const config = loadSenderConfig({ DATABASE_URL: stack.database.url });
  assert.equal(config.HEALTH_PORT, undefined);
  assert.equal(config.HEALTH_HOST, '127.0.0.1');
  assert.throws(
    () => loadSenderConfig({ DATABASE_URL: stack.database.url, HEALTH_PORT: 'nine' }),
    /HEALTH_PORT/,
  );
  // The old name is checked as strictly.
  assert.throws(
    () => loadSenderConfig({ DATABASE_URL: stack.database.url, METRICS_PORT: 'nine' }),
    /METRICS_PORT/,
  );
});

// Last: it stops the sender.
test('SIGTERM stops the sender cleanly, metrics listener included', async () => {
  assert.equal(await sender.stop(), 0);
  await assert.rejects(fetch(`${metricsUrl}/healthz`));
});
