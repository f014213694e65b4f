// `npm start` with no configuration: embedded Postgres, the in-process S3 server and the demo
// model, API and worker as child processes. Checks what a first-time user does: read the
// printed key and curl, submit, fetch the image, Ctrl-C.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = fileURLToPath(new URL('../', import.meta.url));
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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('easel start runs the whole service with no configuration and stops cleanly on Ctrl-C', async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'easel-start-'));
  const env: NodeJS.ProcessEnv = { ...process.env, EASEL_DATA_DIR: dataDir, PORT: '0', WARMUP_SIZE: '64' };
  for (const name of ['DATABASE_URL', 'S3_ENDPOINT', 'MODEL_DIR', 'EASEL_API_KEY']) delete env[name];
  // In a process group of its own, like a command started from a shell, so that Ctrl-C can be
  // reproduced the way a terminal does it: SIGINT to every process of the group at once.
  const child = spawn(process.execPath, ['bin/easel.js', 'start'], {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  group = child.pid ?? 0;
  const exited = once(child, 'exit');

  // Not a terminal: the services' log lines come through as JSON lines, unchanged.
  const logLines: string[] = [];
  const logWaiters: { match: (line: string) => boolean; resolve: () => void }[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    logLines.push(line);
    for (const waiter of [...logWaiters]) {
      if (waiter.match(line)) {
        logWaiters.splice(logWaiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  });
  const waitForLog = (match: (line: string) => boolean) =>
    new Promise<void>((resolve) => {
      if (logLines.some(match)) resolve();
      else logWaiters.push({ match, resolve });
    });

  // The launcher's banner goes to stderr: wait for the line with the URL, then the key.
  let url = '';
  let key = '';
  let banner = '';
  const stderr = createInterface({ input: child.stderr });
  for await (const line of stderr) {
    banner += `${line}\n`;
    url ||= /Easel is running at (\S+)/.exec(line)?.[1] ?? '';
    key ||= /API key: (\S+)/.exec(line)?.[1] ?? '';
    if (line.includes('Ctrl-C stops everything')) break;
    if (line.includes('easel start failed')) assert.fail(banner);
  }
  let rest = '';
  child.stderr.on('data', (chunk) => {
    rest += chunk;
  });
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

  // The launcher forwards the worker's JSON log lines on stdout: wait for this generation's.
  await waitForLog((line) => line.includes('"generation succeeded"') && line.includes(id));
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
  assert.ok(alive(postgresPid));
  process.kill(-group, 'SIGINT');
  const [code] = await exited;
  group = 0;
  assert.equal(code, 0, rest);
  assert.match(rest, /stopping…\nstopped\n$/);
  assert.equal(alive(postgresPid), false, 'Postgres has stopped');

  const entries = logLines.map((line) => JSON.parse(line) as { level: number; msg: string });
  const errors = entries.filter((e) => e.level >= 50);
  assert.deepEqual(errors, [], 'no error-level lines while stopping');
  for (const msg of ['api stopped', 'worker stopped', 'webhook sender stopped']) {
    assert.ok(
      entries.some((e) => e.msg === msg),
      msg,
    );
  }
});
