// `npm start` with no configuration: embedded Postgres, the in-process S3 server and the demo
// model, API and worker as child processes. Checks what a first-time user does: read the
// printed key and curl, submit, fetch the image, Ctrl-C.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { type LogRecord, parseLogLine, spawnChild } from '../bin/local/service-process.ts';
import { processAlive } from '../bin/testing.ts';
import {
  API_STOPPED,
  GENERATION_SUCCEEDED,
  WEBHOOK_SENDER_STOPPED,
  WORKER_STOPPED,
} from '../shared/log-events.ts';

let dataDir = '';
let group = 0;

after(async () => {
  // Whatever a failed run left behind: the launcher's process group, then its data.
  if (group) {
    try {
      process.kill(-group, 'SIGKILL');
    } catch {}
  }
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

test('easel start runs the whole service with no configuration and stops cleanly on Ctrl-C', async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'easel-start-'));
  const env: NodeJS.ProcessEnv = { ...process.env, EASEL_DATA_DIR: dataDir, PORT: '0', WARMUP_SIZE: '64' };
  for (const name of ['DATABASE_URL', 'S3_ENDPOINT', 'MODEL_DIR', 'EASEL_API_KEY']) delete env[name];
  // In a process group of its own, like a command started from a shell, so that Ctrl-C can be
  // reproduced the way a terminal does it: SIGINT to every process of the group at once.
  const launcher = spawnChild({
    args: ['bin/easel.js', 'start'],
    env,
    detached: true,
    name: 'easel start',
    capture: true,
    keep: Number.POSITIVE_INFINITY,
  });
  group = launcher.child.pid ?? 0;

  // The launcher's banner goes to stderr: wait for its last line, then read the URL and the key.
  const last = await launcher.waitForLine(
    (line) => line.includes('Ctrl-C stops everything') || line.includes('easel start failed'),
    'its banner',
  );
  const banner = launcher.stderr();
  if (last.includes('easel start failed')) assert.fail(banner);
  const url = /Easel is running at (\S+)/.exec(banner)?.[1] ?? '';
  const key = /API key: (\S+)/.exec(banner)?.[1] ?? '';
  assert.match(url, /^http:\/\/localhost:\d+$/);
  assert.match(key, /^esl_/);
  assert.match(banner, /curl -s -X POST/);
  assert.match(banner, new RegExp(`Data: ${dataDir}\\n`));

  // The docs page the banner points at, and the viewer script it loads from the API itself.
  const docs = await fetch(`${url}/docs`);
  assert.equal(docs.status, 200);
  const script = /<script src="(\/docs\/assets\/[^"]+\.js)"/.exec(await docs.text())?.[1];
  assert.equal((await fetch(`${url}${script}`)).status, 200);

  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const created = await fetch(`${url}/v1/generations`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ prompt: 'first light', width: 128, height: 96, steps: 3 }),
  });
  assert.equal(created.status, 202);
  const { id } = (await created.json()) as { id: string };

  // The launcher forwards the worker's JSON log lines on stdout (not a terminal: as they are).
  await launcher.waitForLog(GENERATION_SUCCEEDED, (line) => line.generation_id === id, { past: true });
  const done = (await (await fetch(`${url}/v1/generations/${id}`, { headers })).json()) as {
    status: string;
    outputs: { url: string }[];
  };
  assert.equal(done.status, 'succeeded');
  const image = Buffer.from(await (await fetch(done.outputs[0]?.url ?? '')).arrayBuffer());
  const meta = await sharp(image).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 128, 96]);

  // Ctrl-C: the launcher and the services get SIGINT together; Postgres, in a group of its own,
  // does not, and is stopped by the launcher after the services are done with it.
  const postgresPid = Number(
    readFileSync(join(dataDir, 'postgres', 'postmaster.pid'), 'utf8').split('\n')[0],
  );
  assert.ok(processAlive(postgresPid));
  process.kill(-group, 'SIGINT');
  const { code } = await launcher.exited;
  group = 0;
  assert.equal(code, 0, launcher.stderr());
  assert.match(launcher.stderr(), /stopping…\nstopped\n$/);
  assert.equal(processAlive(postgresPid), false, 'Postgres has stopped');

  const entries = launcher.recent().flatMap((line): LogRecord[] => {
    const r = parseLogLine(line);
    return r ? [r] : [];
  });
  const errors = entries.filter((e) => Number(e.level) >= 50);
  assert.deepEqual(errors, [], 'no error-level lines while stopping');
  for (const msg of [API_STOPPED, WORKER_STOPPED, WEBHOOK_SENDER_STOPPED]) {
    assert.ok(
      entries.some((e) => e.msg === msg),
      msg,
    );
  }
});
