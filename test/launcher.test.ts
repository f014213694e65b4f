// `npm start` with no configuration: embedded Postgres, the in-process S3 server and the demo
// model, API and worker as child processes. Checks what a first-time user does: read the
// printed key and curl, submit, fetch the image, Ctrl-C.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = fileURLToPath(new URL('../', import.meta.url));
let dataDir = '';

after(async () => {
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

test('easel start runs the whole service with no configuration and stops cleanly on Ctrl-C', async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'easel-start-'));
  const env: NodeJS.ProcessEnv = { ...process.env, EASEL_DATA_DIR: dataDir, PORT: '0', WARMUP_SIZE: '64' };
  for (const name of ['DATABASE_URL', 'S3_ENDPOINT', 'MODEL_DIR', 'EASEL_API_KEY']) delete env[name];
  const child = spawn(process.execPath, ['bin/easel.ts', 'start'], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  child.stdout.resume();

  // The launcher's banner goes to stderr: wait for the line with the URL, then the key.
  let url = '';
  let key = '';
  let banner = '';
  for await (const line of createInterface({ input: child.stderr })) {
    banner += `${line}\n`;
    url ||= /Easel is running at (\S+)/.exec(line)?.[1] ?? '';
    key ||= /API key: (\S+)/.exec(line)?.[1] ?? '';
    if (line.includes('Ctrl-C stops everything')) break;
    if (line.includes('easel start failed')) assert.fail(banner);
  }
  assert.match(url, /^http:\/\/localhost:\d+$/);
  assert.match(key, /^esl_/);
  assert.match(banner, /curl -s -X POST/);

  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const created = await fetch(`${url}/v1/generations`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ prompt: 'first light', width: 128, height: 96, steps: 3 }),
  });
  assert.equal(created.status, 202);
  const { id } = (await created.json()) as { id: string };

  // The launcher forwards the worker's JSON log lines on stdout: wait for this generation's.
  child.stdout.pause();
  for await (const line of createInterface({ input: child.stdout })) {
    if (line.includes('"generation succeeded"') && line.includes(id)) break;
  }
  const done = (await (await fetch(`${url}/v1/generations/${id}`, { headers })).json()) as {
    status: string;
    outputs: { url: string }[];
  };
  assert.equal(done.status, 'succeeded');
  const image = Buffer.from(await (await fetch(done.outputs[0]?.url ?? '')).arrayBuffer());
  const meta = await sharp(image).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 128, 96]);

  child.kill('SIGINT');
  const [code] = await exited;
  assert.equal(code, 0);
});
