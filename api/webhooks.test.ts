// The webhook parts of the API, in process: create-time URL checks, the signing secret and its
// rotation, the canceled event written with the cancel, the delivery log's ownership, disabled
// URLs (410) and their re-enabling, the migration of the delivery log, and the document's
// `webhooks` section as a receiver's generated types.
import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { Migrator } from 'kysely/migration';
import openapiTS, { astToString, type OpenAPI3 } from 'openapi-typescript';
import { Webhook } from 'standardwebhooks';
import { runToEnd } from '../bin/testing.ts';
import { createDb } from '../db/connect.ts';
import { migrationProvider } from '../db/migrations/index.ts';
import { WEBHOOK_EVENT_TYPES } from '../db/types.ts';
import { ensureWebhookQueue, WEBHOOK_QUEUE } from '../db/webhook-queue.ts';
import { disableWebhookUrl, rotateWebhookSecret } from '../db/webhooks.repository.ts';
import { ADMIN_URL } from '../test/harness/database.ts';
import { webhookHeaders } from '../webhooks/signing.ts';
import { renderOpenApiYaml } from './openapi-export.ts';
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

interface DisabledUrl {
  id: string;
  object: string;
  url: string;
  disabled_at: string;
  webhook_id: string | null;
}

const listDisabled = async (k = key.key) => {
  const res = await call(`${api.url}/v1/webhooks/disabled-urls`, { key: k });
  assert.equal(res.status, 200);
  return ((await res.json()) as { object: string; data: DisabledUrl[] }).data;
};

/** A queued generation canceled at once: its canceled event is written by the API's cancel. */
async function createAndCancel(webhookUrl: string): Promise<string> {
  const res = await create({ webhook_url: webhookUrl, webhook_events: ['generation.canceled'] });
  assert.equal(res.status, 202);
  const { id } = (await res.json()) as { id: string };
  const cancel = await call(`${api.url}/v1/generations/${id}/cancel`, { key: key.key, method: 'POST' });
  assert.equal(cancel.status, 200);
  return id;
}

const eventsOf = (id: string) =>
  api.t.db.selectFrom('webhook_events').selectAll().where('generation_id', '=', id).execute();

test('a 410 disables the URL for the key: pending events are skipped at once, later ones when written', async () => {
  const url = 'https://example.com/hooks/gone';
  // Pending when the 410 arrives (its job queued, not running).
  const pendingId = await createAndCancel(url);
  const [pending] = await eventsOf(pendingId);
  assert.equal(pending?.status, 'pending');
  // Another URL of the same key, and the same URL of another key, are not affected.
  const otherUrlId = await createAndCancel('https://example.com/hooks/fine');

  const { disabled, skipped } = await api.t.db
    .transaction()
    .execute((trx) => disableWebhookUrl(trx, key.id, url, pending?.id ?? null));
  assert.equal(skipped, 1);
  const [after] = await eventsOf(pendingId);
  assert.equal(after?.status, 'disabled');
  assert.equal(after?.attempts, 1);
  assert.equal((await eventsOf(otherUrlId))[0]?.status, 'pending');

  // The delivery log says why nothing was sent, and how to undo it.
  const logRes = await call(`${api.url}/v1/generations/${pendingId}/webhook-deliveries`, { key: key.key });
  const log = ((await logRes.json()) as { data: Record<string, unknown>[] }).data;
  assert.equal(log.length, 1);
  assert.equal(log[0]?.outcome, 'skipped_disabled');
  assert.equal(log[0]?.status_code, null);
  assert.equal(log[0]?.attempt, 1);
  assert.match(String(log[0]?.error), new RegExp(`DELETE /v1/webhooks/disabled-urls/${disabled.id}`));

  // A create naming the disabled URL is accepted; its event is recorded as skipped, with no job.
  const laterId = await createAndCancel(url);
  const [later] = await eventsOf(laterId);
  assert.equal(later?.status, 'disabled');
  assert.deepEqual(await api.boss.findJobs(WEBHOOK_QUEUE, { data: { event_id: later?.id } }), []);
  const laterLog = await call(`${api.url}/v1/generations/${laterId}/webhook-deliveries`, { key: key.key });
  const laterData = ((await laterLog.json()) as { data: Record<string, unknown>[] }).data;
  assert.deepEqual(
    laterData.map((d) => [d.attempt, d.outcome, d.webhook_id]),
    [[1, 'skipped_disabled', later?.id]],
  );

  // Listed for this key only.
  const listed = await listDisabled();
  assert.deepEqual(
    listed.map((d) => [d.id, d.object, d.url, d.webhook_id]),
    [[disabled.id, 'disabled_webhook_url', url, pending?.id]],
  );
  assert.ok(Date.parse(listed[0]?.disabled_at ?? '') <= Date.now());
  const other = await api.newKey('other-disabled');
  assert.deepEqual(await listDisabled(other.key), []);
  const foreign = await call(`${api.url}/v1/webhooks/disabled-urls/${disabled.id}`, {
    key: other.key,
    method: 'DELETE',
  });
  assert.equal(foreign.status, 404);

  // Re-enabled: the next event is queued for sending again.
  const enabled = await call(`${api.url}/v1/webhooks/disabled-urls/${disabled.id}`, {
    key: key.key,
    method: 'DELETE',
  });
  assert.equal(enabled.status, 204);
  assert.deepEqual(await listDisabled(), []);
  const again = await call(`${api.url}/v1/webhooks/disabled-urls/${disabled.id}`, {
    key: key.key,
    method: 'DELETE',
  });
  assert.equal(again.status, 404);
  assert.equal(((await again.json()) as { code: string }).code, 'not_found');
  const notUuid = await call(`${api.url}/v1/webhooks/disabled-urls/nope`, { key: key.key, method: 'DELETE' });
  assert.equal(notUuid.status, 404);
  const resumedId = await createAndCancel(url);
  const [resumed] = await eventsOf(resumedId);
  assert.equal(resumed?.status, 'pending');
  assert.equal((await api.boss.findJobs(WEBHOOK_QUEUE, { data: { event_id: resumed?.id } })).length, 1);
});

test('migration 0007 gives logged attempts the outcome their status implies', async () => {
  // A database of its own, migrated to 0006 and filled the way 0005 left the log, then to 0007.
  const name = `easel_webhooks_migration_${process.pid}_${Date.now()}`;
  const admin = createDb(ADMIN_URL, { max: 1 });
  await sql`create database ${sql.id(name)}`.execute(admin);
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const db = createDb(url.toString(), { max: 1 });
  try {
    const migrator = new Migrator({ db, provider: migrationProvider });
    assert.equal((await migrator.migrateTo('0006-workers-and-admin')).error, undefined);
    const { rows } = await sql<{ id: string }>`
      insert into api_keys (name, prefix, key_hash) values ('k', 'esl_x', 'h') returning id`.execute(db);
    const keyId = rows[0]?.id;
    const generationId = '00000000-0000-4000-8000-000000000001';
    await sql`insert into generations (id, api_key_id, prompt, negative_prompt, width, height, steps,
        guidance_scale, num_images, seed)
      values (${generationId}, ${keyId}, 'p', '', 64, 64, 1, 7, 1, 1)`.execute(db);
    await sql`insert into webhook_events (id, generation_id, api_key_id, type, url, snapshot)
      values ('evt_1', ${generationId}, ${keyId}, 'generation.completed', 'https://x/h', '{}')`.execute(db);
    const attempts: [number | null, string | null, boolean][] = [
      [204, null, false],
      [410, 'HTTP 410', false],
      [404, 'HTTP 404', false],
      [503, 'HTTP 503', true],
      [503, 'HTTP 503', false],
      [null, 'timed out after 10 s', true],
      [null, 'ECONNREFUSED: connect ECONNREFUSED 10.0.0.1:80', false],
      [null, 'webhook URL points at a forbidden address (10.0.0.1)', false],
      [null, 'hooks.example resolves to a forbidden address (10.0.0.1)', false],
    ];
    for (const [i, [status, error, next]] of attempts.entries()) {
      await sql`insert into webhook_deliveries (event_id, url, attempt, status_code, latency_ms, error, next_attempt_at)
        values ('evt_1', 'https://x/h', ${i + 1}, ${status}, 1, ${error}, ${next ? sql`now()` : null})`.execute(
        db,
      );
    }
    assert.equal((await migrator.migrateTo('0007-webhook-disabled-urls')).error, undefined);
    const migrated = await sql<{ outcome: string }>`
      select outcome from webhook_deliveries order by attempt`.execute(db);
    assert.deepEqual(
      migrated.rows.map((d) => d.outcome),
      ['delivered', 'gone', 'rejected', 'retry', 'exhausted', 'retry', 'exhausted', 'forbidden', 'forbidden'],
    );
    await assert.rejects(
      sql`update webhook_deliveries set outcome = 'bogus'`.execute(db),
      /webhook_deliveries_outcome_check/,
    );
    assert.equal((await migrator.migrateTo('0006-workers-and-admin')).error, undefined);
  } finally {
    await db.destroy();
    await sql`drop database if exists ${sql.id(name)} with (force)`.execute(admin);
    await admin.destroy();
  }
});

test("openapi.yaml's webhooks section types a receiver (openapi-typescript)", async () => {
  const { parse } = await import('yaml');
  const document = parse(renderOpenApiYaml()) as Record<string, unknown> & {
    webhooks: Record<string, { post: { requestBody: unknown; parameters: { name: string }[] } }>;
  };
  assert.deepEqual(Object.keys(document.webhooks), [...WEBHOOK_EVENT_TYPES]);
  for (const type of WEBHOOK_EVENT_TYPES) {
    const { post } = document.webhooks[type] ?? assert.fail(type);
    assert.deepEqual(
      post.parameters.map((p) => p.name),
      ['webhook-id', 'webhook-timestamp', 'webhook-signature'],
    );
  }

  const root = fileURLToPath(new URL('../', import.meta.url));
  const dir = await mkdtemp(join(tmpdir(), 'easel-receiver-'));
  try {
    await symlink(join(root, 'node_modules'), join(dir, 'node_modules'), 'dir');
    const ast = await openapiTS(document as unknown as OpenAPI3, { defaultNonNullable: false });
    await writeFile(join(dir, 'schema.ts'), astToString(ast));
    // A receiver typed from the document alone: the body by event type, narrowed on `type`.
    await writeFile(
      join(dir, 'receiver.ts'),
      `import type { components, webhooks } from './schema.ts';
type Completed = webhooks['generation.completed']['post']['requestBody']['content']['application/json'];
type Headers = NonNullable<webhooks['generation.completed']['post']['parameters']['header']>;
type Event = components['schemas']['WebhookEvent'];
export function handle(event: Event, headers: Headers): string {
  const id: string = headers['webhook-id'] + headers['webhook-timestamp'] + headers['webhook-signature'];
  switch (event.type) {
    case 'generation.completed': {
      const done: Completed = event;
      return id + done.data.outputs.map((o) => o.url).join(',') + done.timestamp;
    }
    case 'generation.failed':
      return id + (event.data.error?.code ?? '');
    case 'generation.started':
    case 'generation.canceled':
      return id + event.data.status;
    default: {
      const never: never = event;
      return never;
    }
  }
}
`,
    );
    await writeFile(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
    await writeFile(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'es2024',
          module: 'nodenext',
          moduleResolution: 'nodenext',
          strict: true,
          noEmit: true,
          allowImportingTsExtensions: true,
          skipLibCheck: true,
          types: [],
        },
        files: ['receiver.ts'],
      }),
    );
    const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
    const { code, stdout, stderr } = await runToEnd({
      args: [tsc, '-p', 'tsconfig.json', '--pretty', 'false'],
      cwd: dir,
    });
    assert.equal(code, 0, stdout + stderr);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
