// The real process: boots from the environment, logs 'api listening', serves, and exits 0 on SIGTERM.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createApiKey } from '../db/api-keys.repository.ts';
import { markFailed, markRunning } from '../db/generations.repository.ts';
import { createS3ObjectStore } from '../shared/object-store.ts';
import { createTestDatabase, type TestDatabase } from '../test/harness/database.ts';
import { type S3ServerProcess, startS3ServerProcess } from '../test/harness/s3-server.ts';

const mainScript = fileURLToPath(new URL('./main.ts', import.meta.url));

let t: TestDatabase;
let s3: S3ServerProcess;
const children: ChildProcess[] = [];

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
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await s3?.stop();
  await t?.drop();
});

interface Started {
  child: ChildProcess;
  /** Every JSON line the process printed so far. */
  lines: Array<Record<string, unknown>>;
  events: EventEmitter;
  exited: Promise<number | null>;
  stderr: () => string;
}

function start(env: Record<string, string>): Started {
  const child = spawn(process.execPath, [mainScript], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += String(chunk);
  });
  const lines: Array<Record<string, unknown>> = [];
  const events = new EventEmitter();
  createInterface({ input: child.stdout }).on('line', (raw) => {
    const line = JSON.parse(raw) as Record<string, unknown>;
    lines.push(line);
    events.emit('line', line);
  });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, lines, events, exited, stderr: () => stderr };
}

/** Resolves with the first log line with this msg, or rejects if the process exits first. */
async function waitForLine(started: Started, msg: string): Promise<Record<string, unknown>> {
  const seen = started.lines.find((l) => l.msg === msg);
  if (seen) return seen;
  const found = new Promise<Record<string, unknown>>((resolve) => {
    const onLine = (line: Record<string, unknown>) => {
      if (line.msg !== msg) return;
      started.events.off('line', onLine);
      resolve(line);
    };
    started.events.on('line', onLine);
  });
  const early = started.exited.then((code): never => {
    throw new Error(`api exited (${code}) before '${msg}'; stderr: ${started.stderr()}`);
  });
  return Promise.race([found, early]);
}

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
  const listening = await waitForLine(api, 'api listening');
  const url = listening.url as string;
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(url, 'http://127.0.0.1:0');

  assert.equal((await fetch(`${url}/healthz`)).status, 200);
  assert.equal((await fetch(`${url}/readyz`)).status, 200);
  const { key } = await createApiKey(t.db, { name: 'main' });
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

  api.child.kill('SIGTERM');
  assert.equal(await api.exited, 0);
  assert.ok(api.lines.some((l) => l.msg === 'api stopped'));
  assert.ok(api.lines.some((l) => l.msg === 'request' && l.path === '/v1/generations' && l.status === 202));
});

test('the process listens for status changes: Prefer: wait answers 200 once the generation has finished', async () => {
  const api = start(env());
  const url = (await waitForLine(api, 'api listening')).url as string;
  const { key } = await createApiKey(t.db, { name: 'main wait' });
  const pending = fetch(`${url}/v1/generations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', Prefer: 'wait=30' },
    body: JSON.stringify({ prompt: 'held open' }),
  });
  const waiting = await waitForLine(api, 'waiting for generation');
  const id = waiting.generation_id as string;
  assert.ok(await markRunning(t.db, id));
  assert.ok(await markFailed(t.db, id, { code: 'model_missing', message: 'no unet' }));
  const res = await pending;
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('preference-applied'), 'wait=30');
  assert.equal(((await res.json()) as { status: string }).status, 'failed');

  api.child.kill('SIGTERM');
  assert.equal(await api.exited, 0);
});

test('a bad configuration value stops the process with exit 1 and names the variable', async () => {
  const api = start({ ...env(), PORT: 'eighty', RESULT_URL_TTL_SECONDS: '5' });
  assert.equal(await api.exited, 1);
  assert.match(api.stderr(), /PORT \('eighty'\)/);
  assert.match(api.stderr(), /RESULT_URL_TTL_SECONDS \('5'\)/);
});

test('an unreachable database at boot is a fatal log line and exit 1', async () => {
  const api = start({ ...env(), DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' });
  const fatal = await waitForLine(api, 'api failed to start');
  assert.equal(fatal.level, 60);
  assert.equal(await api.exited, 1);
});
