// The real process: boots from the environment, logs API_LISTENING, serves, and exits 0 on SIGTERM.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Child, parseLogLine, spawnChild } from '../bin/local/service-process.ts';
import { createApiKey } from '../db/api-keys.repository.ts';
import { markFailed, markRunning } from '../db/generations.repository.ts';
import {
  API_FAILED_TO_START,
  API_LISTENING,
  API_STOPPED,
  REQUEST,
  WAITING_FOR_GENERATION,
} from '../shared/log-events.ts';
import { createS3ObjectStore } from '../shared/object-store.ts';
import { createTestDatabase, type TestDatabase } from '../test/harness/database.ts';
import { registerDemoModel } from '../test/harness/models.ts';
import { type S3ServerProcess, startS3ServerProcess } from '../test/harness/s3-server.ts';

let t: TestDatabase;
let s3: S3ServerProcess;
const children: Child[] = [];

before(async () => {
  t = await createTestDatabase('api_main');
  s3 = await startS3ServerProcess();
  const store = createS3ObjectStore({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    bucket: 'easel-main-test',
    accessKeyId: 'easel',
    secretAccessKey: 'easel-secret',
    forcePathStyle: true,
  });
  await store.ensureBucket();
  store.close();
});
after(async () => {
  for (const api of children) await api.stop('SIGKILL');
  await s3?.stop();
  await t?.drop();
});

/** `node api/main.ts` with only this environment (and PATH). */
function start(env: Record<string, string>): Child {
  const api = spawnChild({ args: ['api/main.ts'], env: { PATH: process.env.PATH, ...env }, capture: true });
  children.push(api);
  return api;
}

/** Every JSON line the process printed so far. */
const records = (api: Child) => api.recent().map(parseLogLine);

const env = () => ({
  DATABASE_URL: t.url,
  S3_ENDPOINT: s3.endpoint,
  S3_PUBLIC_ENDPOINT: s3.endpoint.replace('127.0.0.1', 'localhost'),
  S3_BUCKET: 'easel-main-test',
  PORT: '0',
  LOG_LEVEL: 'info',
});

test("boots, logs 'api listening' with its URL, serves, and exits 0 on SIGTERM", async () => {
  const api = start(env());
  const listening = await api.waitForLog(API_LISTENING);
  const url = listening.url as string;
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(url, 'http://127.0.0.1:0');

  assert.equal((await fetch(`${url}/healthz`)).status, 200);
  assert.equal((await fetch(`${url}/readyz`)).status, 200);
  const { key } = await createApiKey(t.db, { name: 'main' });
  await registerDemoModel(t.db);
  const res = await fetch(`${url}/v1/generations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'from the real process' }),
  });
  assert.equal(res.status, 202);
  const { id } = (await res.json()) as { id: string };
  const row = await t.db.selectFrom('generations').select('status').where('id', '=', id).executeTakeFirst();
  assert.equal(row?.status, 'queued');

  // Output URLs are signed for S3_PUBLIC_ENDPOINT, the address clients reach.
  await t.db
    .updateTable('generations')
    .set({
      status: 'succeeded',
      outputs: JSON.stringify([
        {
          index: 0,
          key: `generations/${id}/0.jpg`,
          width: 512,
          height: 512,
          content_type: 'image/jpeg',
          bytes: 1,
          sha256: 'x',
        },
      ]),
    })
    .where('id', '=', id)
    .execute();
  const read = await fetch(`${url}/v1/generations/${id}`, { headers: { Authorization: `Bearer ${key}` } });
  const { outputs } = (await read.json()) as { outputs: Array<{ url: string }> };
  assert.ok(outputs[0]?.url.startsWith(env().S3_PUBLIC_ENDPOINT), outputs[0]?.url);

  assert.equal(await api.stop('SIGTERM'), 0);
  assert.ok(records(api).some((l) => l?.msg === API_STOPPED));
  assert.ok(records(api).some((l) => l?.msg === REQUEST && l.path === '/v1/generations' && l.status === 202));
});

test('the process listens for status changes: Prefer: wait answers 200 once the generation has finished', async () => {
  const api = start(env());
  const url = (await api.waitForLog(API_LISTENING)).url as string;
  const { key } = await createApiKey(t.db, { name: 'main wait' });
  const pending = fetch(`${url}/v1/generations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', Prefer: 'wait=30' },
    body: JSON.stringify({ prompt: 'held open' }),
  });
  const waiting = await api.waitForLog(WAITING_FOR_GENERATION);
  const id = waiting.generation_id as string;
  assert.ok(await markRunning(t.db, id));
  assert.ok(await markFailed(t.db, id, { code: 'model_missing', message: 'no unet' }));
  const res = await pending;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('preference-applied'), 'wait=30');
  assert.equal(((await res.json()) as { status: string }).status, 'failed');

  assert.equal(await api.stop('SIGTERM'), 0);
});

test('a bad configuration value stops the process with exit 1 and names the variable', async () => {
  const api = start({ ...env(), PORT: 'eighty', RESULT_URL_TTL_SECONDS: '5' });
  assert.equal((await api.exited).code, 1);
  assert.match(api.stderr(), /PORT \('eighty'\)/);
  assert.match(api.stderr(), /RESULT_URL_TTL_SECONDS \('5'\)/);
});

test('an unreachable database at boot is a fatal log line and exit 1', async () => {
  const api = start({ ...env(), DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
  const fatal = await api.waitForLog(API_FAILED_TO_START);
  assert.equal(fatal.level, 60);
  assert.equal((await api.exited).code, 1);
});
