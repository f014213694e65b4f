// The webhook parts of the API, in process: create-time URL checks, the signing secret and its
// rotation, the canceled event written with the cancel, the delivery log's ownership.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { ensureWebhookQueue, WEBHOOK_QUEUE } from '../db/webhooks/queue.ts';
import { webhookHeaders } from '../db/webhooks/signing.ts';
import { rotateWebhookSecret } from '../db/webhooks.repository.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;
let key: { id: string; key: string };

before(async () => {
  api = await startTestApi('api_webhooks');
  await ensureWebhookQueue(api.boss);
  key = await api.newKey('webhooks');
});
after(async () => {
  await api?.close();
});

const create = (json: Record<string, unknown>, k = key.key) =>
  call(`${api.url}/v1/generations`, { key: k, json: { prompt: 'a hook', ...json } });

test('a webhook_url at a literal forbidden address is refused with 422 webhook_url_forbidden', async () => {
  for (const url of [
    'http://127.0.0.1/hook',
    'http://10.0.0.8/hook',
    'http://172.20.1.1/',
    'http://192.168.0.10/',
    'http://169.254.169.254/latest/meta-data/',
    'http://[::1]:9000/',
    'http://[fd00::1]/',
    'http://[::ffff:127.0.0.1]/',
  ]) {
    const res = await create({ webhook_url: url });
    assert.equal(res.status, 422, url);
    const problem = (await res.json()) as { code: string; errors: { field: string }[] };
    assert.equal(problem.code, 'webhook_url_forbidden');
    assert.equal(problem.errors[0]?.field, 'webhook_url');
  }
});

test('webhook fields are validated', async () => {
  for (const json of [
    { webhook_url: 'ftp://example.com/hook' },
    { webhook_url: `https://example.com/${'a'.repeat(2100)}` },
    { webhook_url: 'https://example.com/hook', webhook_events: ['generation.exploded'] },
    { webhook_url: 'https://example.com/hook', webhook_events: [] },
    { webhook_events: ['generation.completed'] },
  ]) {
    const res = await create(json);
    assert.equal(res.status, 422, JSON.stringify(json).slice(0, 80));
    assert.equal(((await res.json()) as { code: string }).code, 'validation_failed');
  }
});

test('the row stores the URL and the default terminal events; a hostname is accepted at create', async () => {
  const res = await create({ webhook_url: 'http://localhost:1/hook' });
  assert.equal(res.status, 202);
  const { id } = (await res.json()) as { id: string };
  const row = await api.t.db
    .selectFrom('generations')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
  assert.equal(row.webhook_url, 'http://localhost:1/hook');
  assert.deepEqual(row.webhook_events, ['generation.completed', 'generation.failed', 'generation.canceled']);
});

test('canceling a queued generation records the canceled event and its job in the same transaction', async () => {
  const res = await create({ webhook_url: 'https://example.com/hook' });
  const { id } = (await res.json()) as { id: string };
  const cancel = await call(`${api.url}/v1/generations/${id}/cancel`, { key: key.key, method: 'POST' });
  assert.equal(cancel.status, 200);
  const events = await api.t.db
    .selectFrom('webhook_events')
    .selectAll()
    .where('generation_id', '=', id)
    .execute();
  assert.equal(events.length, 1);
  assert.equal(events[0]?.type, 'generation.canceled');
  assert.equal(events[0]?.status, 'pending');
  const jobs = await api.boss.findJobs(WEBHOOK_QUEUE, { data: { event_id: events[0]?.id } });
  assert.equal(jobs.length, 1);
  // The log is the owner's only.
  const other = await api.newKey('other');
  const foreign = await call(`${api.url}/v1/generations/${id}/webhook-deliveries`, { key: other.key });
  assert.equal(foreign.status, 404);
  const mine = await call(`${api.url}/v1/generations/${id}/webhook-deliveries`, { key: key.key });
  assert.deepEqual(await mine.json(), { object: 'list', data: [] });
});

test('GET /v1/webhooks/secret; rotation keeps the old secret signing until its expiry', async () => {
  const read = async () => {
    const res = await call(`${api.url}/v1/webhooks/secret`, { key: key.key });
    assert.equal(res.status, 200);
    return (await res.json()) as { secret: string; previous_secret_expires_at: string | null };
  };
  const before = await read();
  assert.match(before.secret, /^whsec_[A-Za-z0-9+/=]{40,}$/);
  assert.equal(before.previous_secret_expires_at, null);
  const rotated = await rotateWebhookSecret(api.t.db, key.id, 3600);
  const now = await read();
  assert.equal(now.secret, rotated);
  assert.notEqual(now.secret, before.secret);
  assert.ok(now.previous_secret_expires_at && Date.parse(now.previous_secret_expires_at) > Date.now());
  // Both keys verify what is signed during the overlap.
  const body = '{"type":"generation.completed"}';
  const headers = webhookHeaders([now.secret, before.secret], 'evt_x', Math.floor(Date.now() / 1000), body);
  new Webhook(before.secret).verify(body, headers);
  new Webhook(now.secret).verify(body, headers);
  await rotateWebhookSecret(api.t.db, key.id, 0);
  assert.equal((await read()).previous_secret_expires_at, null);
});
