// Webhooks on the real stack: API, GPU worker and webhook sender as processes, real HTTP receivers
// on 127.0.0.1 (allowed by WEBHOOK_ALLOW_PRIVATE=true), a compressed retry schedule.
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import type { z } from 'zod';
import type { WebhookEvent } from '../api/webhooks.openapi.ts';
import { cleanEnv, runEasel } from '../bin/testing.ts';
import { findWebhookEvent } from '../db/webhooks.repository.ts';
import {
  WEBHOOK_ATTEMPT_FAILED,
  WEBHOOK_SKIPPED_DISABLED,
  WEBHOOK_URL_DISABLED,
} from '../shared/log-events.ts';
import { type Stack, startStack } from './harness/stack.ts';

const SENDER_ENV = {
  WEBHOOK_RETRY_SCHEDULE: '0,1,1,1,1,1',
  WEBHOOK_TIMEOUT_SECONDS: '1.5',
  WEBHOOK_RECOVERY_SECONDS: '1',
};

interface Received {
  id: string;
  timestamp: string;
  signature: string;
  body: string;
  headers: IncomingHttpHeaders;
  payload: z.infer<typeof WebhookEvent>;
}

/** What the receiver does with its n-th request (0-based); default 200. */
type Behaviour = (n: number, res: ServerResponse) => void;

interface Receiver {
  url: string;
  port: number;
  received: Received[];
  /** Resolves when `count` requests have arrived. */
  waitFor(count: number): Promise<Received[]>;
  close(): Promise<void>;
}

let receivers = 0;

async function startReceiver(behaviour: Behaviour = (_n, res) => res.end('ok'), port = 0): Promise<Receiver> {
  const received: Received[] = [];
  const waiters: { count: number; resolve: (r: Received[]) => void }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const n = received.length;
      received.push({
        id: String(req.headers['webhook-id']),
        timestamp: String(req.headers['webhook-timestamp']),
        signature: String(req.headers['webhook-signature']),
        body,
        headers: req.headers,
        payload: JSON.parse(body),
      });
      for (const w of [...waiters]) {
        if (received.length >= w.count) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve([...received]);
        }
      }
      behaviour(n, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  return {
    // A path of its own: a URL disabled by a 410 stays disabled, and ports are reused.
    url: `http://127.0.0.1:${actual}/hook/${++receivers}`,
    port: actual,
    received,
    waitFor: (count) =>
      received.length >= count
        ? Promise.resolve([...received])
        : new Promise((resolve) => waiters.push({ count, resolve })),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let stack: Stack;
let secret: string;
/** Every log line of the webhook senders so far. */
const senderLines: Record<string, unknown>[] = [];

/** Resolves with the first sender log line (past or future) that matches. */
function senderLine(match: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  const found = senderLines.find(match);
  if (found) return Promise.resolve(found);
  return new Promise((resolve) => {
    const listener = (line: Record<string, unknown>, service: string) => {
      if (service !== 'webhook-sender' || !match(line)) return;
      stack.logs.off('line', listener);
      resolve(line);
    };
    stack.logs.on('line', listener);
  });
}

before(async () => {
  stack = await startStack('webhooks', { WEBHOOK_ALLOW_PRIVATE: 'true', WARMUP_SIZE: '64' });
  stack.logs.on('line', (line, service) => {
    if (service === 'webhook-sender') senderLines.push(line);
  });
  await stack.startApi();
  await stack.startWebhookSender(SENDER_ENV);
  await stack.startWorker();
  const res = await stack.request('/v1/webhooks/secret');
  assert.equal(res.status, 200);
  secret = ((await res.json()) as { secret: string }).secret;
});

after(async () => {
  await stack?.stop();
});

async function create(webhookUrl: string, events?: string[]): Promise<string> {
  const res = await stack.request('/v1/generations', {
    method: 'POST',
    body: JSON.stringify({
      prompt: 'a webhook test',
      width: 64,
      height: 64,
      steps: 2,
      webhook_url: webhookUrl,
      ...(events ? { webhook_events: events } : {}),
    }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return ((await res.json()) as { id: string }).id;
}

interface LogEntry {
  id: string;
  webhook_id: string;
  type: string;
  attempt: number;
  outcome: string;
  status_code: number | null;
  error: string | null;
  next_attempt_at: string | null;
}

async function deliveryLog(id: string): Promise<LogEntry[]> {
  const res = await stack.request(`/v1/generations/${id}/webhook-deliveries`);
  assert.equal(res.status, 200);
  return ((await res.json()) as { data: LogEntry[] }).data;
}

/** Polls the delivery log (the sender records after the receiver has answered). */
async function logUntil(id: string, done: (log: LogEntry[]) => boolean, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const log = await deliveryLog(id);
    if (done(log)) return log;
    if (Date.now() > deadline) throw new Error(`delivery log never matched: ${JSON.stringify(log)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const verify = (r: Received) => new Webhook(secret).verify(r.body, r.headers as Record<string, string>);

test('completed event: signed (standardwebhooks verifies), full resource, default filter skips started', async () => {
  const receiver = await startReceiver();
  try {
    const id = await create(receiver.url);
    const [hit] = await receiver.waitFor(1);
    assert.ok(hit);
    assert.deepEqual(verify(hit), hit.payload);
    assert.match(hit.id, /^evt_[0-9a-f-]{36}$/);
    assert.equal(hit.payload.type, 'generation.completed');
    assert.equal(hit.payload.data.id, id);
    assert.equal(hit.payload.data.status, 'succeeded');
    assert.equal(hit.payload.data.outputs.length, 1);
    assert.ok(Math.abs(Number(hit.timestamp) - Date.now() / 1000) < 30);
    const log = await logUntil(id, (l) => l.length === 1);
    assert.equal(log[0]?.status_code, 200);
    assert.equal(log[0]?.webhook_id, hit.id);
    // The started event was never recorded (it would have been, with the running status, before this one).
    const events = await stack.database.db
      .selectFrom('webhook_events')
      .select('type')
      .where('generation_id', '=', id)
      .execute();
    assert.deepEqual(
      events.map((e) => e.type),
      ['generation.completed'],
    );
    assert.equal(receiver.received.length, 1);

    // Redeliver: the same webhook-id again, a new attempt in the log.
    const res = await stack.request(`/v1/webhook-deliveries/${log[0]?.id}/redeliver`, { method: 'POST' });
    assert.equal(res.status, 202);
    const [, again] = await receiver.waitFor(2);
    assert.equal(again?.id, hit.id);
    assert.deepEqual(verify(again as Received), again?.payload);
    const after = await logUntil(id, (l) => l.length === 2);
    assert.deepEqual(
      after.map((e) => [e.attempt, e.status_code]),
      [
        [1, 200],
        [2, 200],
      ],
    );
    // Another key cannot see the log.
    const foreign = await stack.request(`/v1/webhook-deliveries/${log[0]?.id}/redeliver`, {
      method: 'POST',
      headers: { authorization: 'Bearer esl_nope' },
    });
    assert.equal(foreign.status, 401);
  } finally {
    await receiver.close();
  }
});

test('asked-for started event arrives before completed', async () => {
  const receiver = await startReceiver();
  try {
    await create(receiver.url, ['generation.started', 'generation.completed']);
    const hits = await receiver.waitFor(2);
    assert.deepEqual(hits.map((h) => h.payload.type).sort(), ['generation.completed', 'generation.started']);
    assert.notEqual(hits[0]?.id, hits[1]?.id);
    for (const h of hits) assert.deepEqual(verify(h), h.payload);
  } finally {
    await receiver.close();
  }
});

test('500 then 200: exactly one more attempt, same webhook-id; the log matches', async () => {
  const receiver = await startReceiver((n, res) => {
    res.statusCode = n === 0 ? 500 : 200;
    res.end(n === 0 ? 'boom' : 'ok');
  });
  try {
    const id = await create(receiver.url);
    const hits = await receiver.waitFor(2);
    assert.equal(hits[0]?.id, hits[1]?.id);
    assert.notEqual(hits[0]?.signature, undefined);
    const log = await logUntil(id, (l) => l.length === 2 && l[1]?.status_code === 200);
    assert.deepEqual(
      log.map((e) => [e.attempt, e.status_code]),
      [
        [1, 500],
        [2, 200],
      ],
    );
    assert.ok(log[0]?.next_attempt_at);
    assert.equal(log[1]?.next_attempt_at, null);
    const event = await findWebhookEvent(stack.database.db, hits[0]?.id ?? '');
    assert.equal(event?.status, 'delivered');
    assert.equal(receiver.received.length, 2);
  } finally {
    await receiver.close();
  }
});

test('receiver down for the first attempts gets the event once it is up', async () => {
  const placeholder = await startReceiver();
  const { port, url } = placeholder;
  await placeholder.close();
  const id = await create(url);
  await logUntil(id, (l) => l.length >= 2);
  const receiver = await startReceiver(undefined, port);
  try {
    const [hit] = await receiver.waitFor(1);
    assert.deepEqual(verify(hit as Received), hit?.payload);
    const log = await logUntil(id, (l) => l.some((e) => e.status_code === 200));
    assert.ok(log.slice(0, 2).every((e) => e.status_code === null && e.error));
    assert.ok(log.every((e) => e.webhook_id === hit?.id));
  } finally {
    await receiver.close();
  }
});

test('410 Gone stops retries and disables the event', async () => {
  const receiver = await startReceiver((_n, res) => {
    res.statusCode = 410;
    res.end();
  });
  try {
    const id = await create(receiver.url);
    const [hit] = await receiver.waitFor(1);
    const log = await logUntil(id, (l) => l.length === 1);
    assert.equal(log[0]?.status_code, 410);
    assert.equal(log[0]?.outcome, 'gone');
    assert.equal(log[0]?.next_attempt_at, null);
    const event = await findWebhookEvent(stack.database.db, hit?.id ?? '');
    assert.equal(event?.status, 'disabled');
    // A later generation to another receiver completes; nothing more reached this one.
    const other = await startReceiver();
    await create(other.url);
    await other.waitFor(1);
    await other.close();
    assert.equal(receiver.received.length, 1);
  } finally {
    await receiver.close();
  }
});

interface DisabledUrl {
  id: string;
  url: string;
  webhook_id: string | null;
}

async function disabledUrls(): Promise<DisabledUrl[]> {
  const res = await stack.request('/v1/webhooks/disabled-urls');
  assert.equal(res.status, 200);
  return ((await res.json()) as { data: DisabledUrl[] }).data;
}

const easelKeys = (...args: string[]) =>
  runEasel(['keys', ...args], cleanEnv({ DATABASE_URL: stack.database.url }));

test('410: later events to the URL are skipped and listed (same generation, later ones) until re-enabled', async () => {
  const receiver = await startReceiver((n, res) => {
    res.statusCode = n === 0 ? 410 : 200;
    res.end();
  });
  try {
    // Runs until canceled: its started event meets the 410 while the generation still runs.
    const id = await stack.enqueue({
      steps: 1000,
      width: 2048,
      height: 2048,
      webhook_url: receiver.url,
      webhook_events: ['generation.started', 'generation.canceled'],
    });
    const [started] = await receiver.waitFor(1);
    assert.equal(started?.payload.type, 'generation.started');
    await logUntil(id, (l) => l[0]?.outcome === 'gone');
    const disabledLine = await senderLine((l) => l.msg === WEBHOOK_URL_DISABLED && l.generation_id === id);
    assert.equal(disabledLine.url, receiver.url);

    // The same generation's next event: written after the 410, skipped when written.
    const cancel = await stack.request(`/v1/generations/${id}/cancel`, { method: 'POST' });
    assert.equal(cancel.status, 202);
    const log = await logUntil(id, (l) => l.length === 2);
    assert.deepEqual(
      log.map((e) => [e.type, e.attempt, e.outcome, e.status_code]),
      [
        ['generation.started', 1, 'gone', 410],
        ['generation.canceled', 1, 'skipped_disabled', null],
      ],
    );
    assert.match(log[1]?.error ?? '', /410 Gone.*DELETE \/v1\/webhooks\/disabled-urls\//);

    // A later generation of the key to the same URL: accepted, its event skipped.
    const later = await create(receiver.url);
    const laterLog = await logUntil(later, (l) => l.length === 1);
    assert.deepEqual(
      laterLog.map((e) => [e.type, e.outcome]),
      [['generation.completed', 'skipped_disabled']],
    );
    const [laterEvent] = await stack.database.db
      .selectFrom('webhook_events')
      .select(['status', 'attempts'])
      .where('generation_id', '=', later)
      .execute();
    assert.deepEqual(laterEvent, { status: 'disabled', attempts: 1 });

    // A redelivery asked for while disabled: the sender checks before sending, and skips it.
    const redeliver = await stack.request(`/v1/webhook-deliveries/${log[0]?.id}/redeliver`, {
      method: 'POST',
    });
    assert.equal(redeliver.status, 202);
    const redelivered = await logUntil(id, (l) => l.length === 3);
    assert.deepEqual(
      redelivered.filter((e) => e.webhook_id === started?.id).map((e) => [e.attempt, e.outcome]),
      [
        [1, 'gone'],
        [2, 'skipped_disabled'],
      ],
    );
    const skippedLine = await senderLine(
      (l) => l.msg === WEBHOOK_SKIPPED_DISABLED && l.webhook_id === started?.id,
    );
    assert.equal(skippedLine.outcome, 'skipped_disabled');

    // Listed by the API and the CLI.
    const listed = (await disabledUrls()).filter((d) => d.url === receiver.url);
    assert.deepEqual(
      listed.map((d) => d.webhook_id),
      [started?.id],
    );
    const cliList = await easelKeys('disabled-webhook-urls', stack.apiKey, '--json');
    assert.equal(cliList.code, 0, cliList.stderr);
    const cliRows = JSON.parse(cliList.stdout) as DisabledUrl[];
    assert.ok(cliRows.some((d) => d.id === listed[0]?.id && d.url === receiver.url));
    assert.equal(receiver.received.length, 1, 'nothing but the first event reached the receiver');

    // Re-enabled (here with the CLI; the API's DELETE does the same): the next event is delivered.
    const enable = await easelKeys('enable-webhook-url', stack.apiKey, receiver.url);
    assert.equal(enable.code, 0, enable.stderr);
    assert.match(enable.stdout, /^re-enabled http:\/\/127\.0\.0\.1:\d+\/hook\/\d+ for API key/);
    assert.ok(!(await disabledUrls()).some((d) => d.url === receiver.url));
    const enableAgain = await easelKeys('enable-webhook-url', stack.apiKey, receiver.url);
    assert.equal(enableAgain.code, 1);
    assert.match(enableAgain.stderr, /is not disabled for API key/);
    const resumed = await create(receiver.url);
    const [, hit] = await receiver.waitFor(2);
    assert.equal(hit?.payload.data.id, resumed);
    assert.deepEqual(verify(hit as Received), hit?.payload);
    const resumedLog = await logUntil(resumed, (l) => l.length === 1);
    assert.equal(resumedLog[0]?.outcome, 'delivered');
  } finally {
    await receiver.close();
  }
});

test('an event in flight when the 410 arrives ends skipped too, not retried to the retired URL', async () => {
  const held: ServerResponse[] = [];
  let firstId: string | undefined;
  const receiver = await startReceiver((n, res) => {
    firstId ??= receiver.received[0]?.id;
    // The first event is held (still being sent when the second one's 410 disables the URL).
    if (receiver.received[n]?.id === firstId) held.push(res);
    else {
      res.statusCode = 410;
      res.end();
    }
  });
  try {
    const first = await create(receiver.url);
    await receiver.waitFor(1);
    const second = await create(receiver.url);
    await logUntil(second, (l) => l[0]?.outcome === 'gone');
    for (const res of held) if (!res.writableEnded && !res.destroyed) res.writeHead(503).end();
    // Its retry finds the URL disabled (marked with the 410, or checked by the sender before sending).
    const log = await logUntil(first, (l) => l.at(-1)?.outcome === 'skipped_disabled');
    assert.ok(log.slice(0, -1).every((e) => e.outcome === 'retry'));
    assert.equal(log.at(-1)?.next_attempt_at, null);
    const event = await findWebhookEvent(stack.database.db, firstId ?? '');
    assert.equal(event?.status, 'disabled');
    // After the 410, nothing more of the first event reached the receiver.
    const goneAt = receiver.received.findIndex((r) => r.id !== firstId);
    assert.ok(receiver.received.slice(goneAt).every((r) => r.id !== firstId));
  } finally {
    await receiver.close();
  }
});

test('the last scheduled attempt of a retryable failure is `exhausted`, not `retry`', async () => {
  const receiver = await startReceiver((_n, res) => {
    res.statusCode = 500;
    res.end('down');
  });
  try {
    const id = await create(receiver.url);
    const attempts = SENDER_ENV.WEBHOOK_RETRY_SCHEDULE.split(',').length;
    const log = await logUntil(id, (l) => l.length === attempts);
    assert.deepEqual(
      log.map((e) => e.outcome),
      [...Array(attempts - 1).fill('retry'), 'exhausted'],
    );
    assert.equal(log.at(-1)?.next_attempt_at, null);
    assert.equal(log.at(-1)?.status_code, 500);
    const line = await senderLine(
      (l) => l.msg === WEBHOOK_ATTEMPT_FAILED && l.generation_id === id && l.attempt === attempts,
    );
    assert.equal(line.outcome, 'exhausted');
    assert.equal(line.next_attempt_at, null);
    const event = await findWebhookEvent(stack.database.db, log[0]?.webhook_id ?? '');
    assert.equal(event?.status, 'failed');
    assert.equal(receiver.received.length, attempts);
  } finally {
    await receiver.close();
  }
});

test('a slow receiver hits the timeout and is retried', async () => {
  const receiver = await startReceiver((n, res) => {
    if (n === 0) setTimeout(() => res.end('late'), 3000).unref();
    else res.end('ok');
  });
  try {
    const id = await create(receiver.url);
    const hits = await receiver.waitFor(2);
    assert.equal(hits[0]?.id, hits[1]?.id);
    const log = await logUntil(id, (l) => l.some((e) => e.status_code === 200));
    assert.equal(log[0]?.status_code, null);
    assert.match(log[0]?.error ?? '', /timed out/);
    assert.equal(log.at(-1)?.status_code, 200);
  } finally {
    await receiver.close();
  }
});

test('a sender killed mid-send loses no event: a restarted sender delivers it', async () => {
  let release: (() => void) | undefined;
  const receiver = await startReceiver((n, res) => {
    if (n === 0) release = () => res.end('too late');
    else res.end('ok');
  });
  try {
    await create(receiver.url);
    const [first] = await receiver.waitFor(1);
    for (const sender of stack.senders) await sender.stop('SIGKILL');
    stack.senders.length = 0;
    release?.();
    await stack.startWebhookSender(SENDER_ENV);
    const hits = await receiver.waitFor(2);
    assert.equal(hits[1]?.id, first?.id);
    assert.deepEqual(verify(hits[1] as Received), hits[1]?.payload);
  } finally {
    await receiver.close();
  }
});
