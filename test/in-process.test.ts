// The three services started in the test's own process through startApi, startWorker and
// startWebhookSender, with no child process: a generation goes through all three (API → queue →
// worker → webhook event → sender → receiver), each /readyz answers in the one readiness shape,
// and stop() releases everything (this file's process can only end if nothing is left open).
// Real Postgres, the S3 server process, the demo model through ONNX Runtime.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { loadApiConfig } from '../api/config.ts';
import { startApi } from '../api/start.ts';
import type { Service } from '../bin/local/service-process.ts';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import {
  API_FAILED_TO_START,
  API_STOPPED,
  DEPRECATED_SETTING,
  GENERATION_SUCCEEDED,
  WEBHOOK_DELIVERED,
  WEBHOOK_SENDER_STOPPED,
  WORKER_STOPPED,
} from '../shared/log-events.ts';
import { ReadyBody } from '../shared/readiness.ts';
import { StartFailed } from '../shared/service.ts';
import { type Stack, startStack } from './harness/stack.ts';

let stack: Stack;
let receiver: Server;
const received: { type: string; data: { id: string; status: string } }[] = [];

before(async () => {
  stack = await startStack('in_process', { WARMUP_SIZE: '64', WEBHOOK_ALLOW_PRIVATE: 'true' });
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.end('ok');
    });
  });
  receiver.listen(0, '127.0.0.1');
  await once(receiver, 'listening');
});

after(async () => {
  receiver?.close();
  await stack?.stop();
});

async function readyz(url: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${String(url)}/readyz`);
  assert.equal(res.status, 200, `${String(url)}/readyz`);
  const body = (await res.json()) as Record<string, unknown>;
  ReadyBody.parse(body); // the shape they share; members of a process's own come along
  return body;
}

const logged = (service: Service, msg: string) =>
  service.recent().some((line) => line.includes(`"msg":"${msg}"`));

test('startApi, startWorker and startWebhookSender run a generation in-process and stop cleanly', {
  timeout: 120_000,
}, async () => {
  const api = await stack.startApiInProcess();
  const worker = await stack.startWorkerInProcess({ WORKER_ID: 'in-process', HEALTH_PORT: '0' });
  // Under the sender's old name for the listener's port: it still works, and says so.
  const sender = await stack.startWebhookSenderInProcess({ METRICS_PORT: '0' });
  assert.equal(api.ready.url, api.handle.ready.url);
  assert.match(String(api.ready.url), /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(worker.ready.worker_id, 'in-process');
  assert.ok(logged(sender, DEPRECATED_SETTING), 'METRICS_PORT is reported as deprecated');

  const port = (receiver.address() as AddressInfo).port;
  const res = await stack.request('/v1/generations', {
    method: 'POST',
    body: JSON.stringify({
      prompt: 'in one process',
      width: 64,
      height: 64,
      steps: 2,
      webhook_url: `http://127.0.0.1:${port}/hook`,
    }),
  });
  assert.equal(res.status, 202);
  const { id } = (await res.json()) as GenerationResource;
  const delivered = sender.waitForLog(WEBHOOK_DELIVERED, (line) => line.generation_id === id);
  await worker.waitForLog(GENERATION_SUCCEEDED, (line) => line.generation_id === id);
  await delivered;
  const done = (await (await stack.request(`/v1/generations/${id}`)).json()) as GenerationResource;
  assert.equal(done.status, 'succeeded');
  assert.equal(done.outputs.length, 1);
  assert.deepEqual(
    received.map((event) => [event.type, event.data.id, event.data.status]),
    [['generation.completed', id, 'succeeded']],
  );

  // One readiness shape across the three: {status: 'ready', checks: {…}} (plus the worker's own members).
  const apiReady = await readyz(api.ready.url);
  assert.deepEqual(apiReady, { status: 'ready', checks: { database: 'ok', object_store: 'ok' } });
  const workerReady = await readyz(worker.handle.ready.health_url);
  assert.deepEqual(workerReady.checks, { models: 'ok', database: 'ok', object_store: 'ok' });
  assert.equal(workerReady.worker_id, 'in-process');
  const senderReady = await readyz(sender.handle.ready.metrics_url);
  assert.deepEqual(senderReady, { status: 'ready', checks: { queue: 'ok', database: 'ok' } });

  // stop() resolves once everything is released and the stopped line is logged; again, the same.
  assert.deepEqual(await Promise.all([sender.stop(), worker.stop(), api.stop()]), [0, 0, 0]);
  assert.equal(await api.handle.stop(), undefined);
  assert.ok(logged(api, API_STOPPED));
  assert.ok(logged(worker, WORKER_STOPPED));
  assert.ok(logged(sender, WEBHOOK_SENDER_STOPPED));
  // Their listeners are closed.
  await assert.rejects(fetch(`${String(api.ready.url)}/healthz`));
  await assert.rejects(fetch(`${String(sender.handle.ready.metrics_url)}/healthz`));
  await assert.rejects(fetch(`${String(worker.handle.ready.health_url)}/healthz`));
  const workers = await stack.database.db.selectFrom('workers').select(['id', 'stopped_at']).execute();
  assert.ok(workers.find((w) => w.id === 'in-process')?.stopped_at, 'the worker marked itself stopped');
});

test('a start that fails logs why, releases what it opened and rejects with StartFailed', async () => {
  const lines: string[] = [];
  const config = loadApiConfig({ ...stack.env, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
  await assert.rejects(
    startApi(config, { logDestination: { write: (line: string) => void lines.push(line) } }),
    StartFailed,
  );
  const fatal = lines.map((line) => JSON.parse(line) as { msg: string; level: number }).at(-1);
  assert.deepEqual([fatal?.msg, fatal?.level], [API_FAILED_TO_START, 60]);
});
