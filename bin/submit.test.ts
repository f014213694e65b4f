// `easel submit` against the real stack: API and worker processes, Postgres, the S3 server
// process and the demo model, over real HTTP, with the CLI run as a user runs it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import { GENERATION_CANCELED, GENERATION_STARTED } from '../shared/log-events.ts';
import { type Stack, startStack } from '../test/harness/stack.ts';
import { progressView } from './commands/submit.ts';
import type { Generation } from './remote/client.ts';
import { type CliRun, cleanEnv, repoRoot, runEasel } from './testing.ts';

let stack: Stack;
let dir = '';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'easel-submit-'));
  stack = await startStack('cli_submit');
  await Promise.all([stack.startApi(), stack.startWorker()]);
});

after(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The client's environment: where the server is and which key to use, nothing else of ours. */
function clientEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return cleanEnv({ EASEL_URL: stack.baseUrl(), EASEL_API_KEY: stack.apiKey, EASEL_DATA_DIR: dir, ...extra });
}

function submit(...args: string[]): Promise<CliRun> {
  return runEasel(['submit', ...args], clientEnv());
}

async function submitJson(...args: string[]): Promise<GenerationResource> {
  const run = await submit(...args, '--json');
  assert.equal(run.code, 0, `easel submit ${args.join(' ')} failed:\n${run.stderr}`);
  const lines = run.stdout.trim().split('\n');
  assert.equal(lines.length, 1, 'one JSON object on stdout');
  return JSON.parse(lines[0] as string) as GenerationResource;
}

function assertFailure(run: CliRun, pattern: RegExp) {
  assert.equal(run.code, 1, run.stderr);
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0] as string, /^easel submit: /);
  assert.match(lines[0] as string, pattern);
}

async function jpeg(path: string) {
  const bytes = await readFile(path);
  const meta = await sharp(bytes).metadata();
  return { bytes, format: meta.format, width: meta.width, height: meta.height };
}

describe('easel submit --wait', () => {
  test('--json prints the succeeded resource and --out holds a JPEG of the requested size', async () => {
    const out = join(dir, 'nested', 'one.jpg');
    // --wait follows the generation over its event stream, not by polling.
    const streamed: string[] = [];
    const onLine = (record: Record<string, unknown>) => {
      if (record.msg === 'request' && String(record.path).endsWith('/events'))
        streamed.push(String(record.path));
    };
    stack.logs.on('line', onLine);
    const done = await submitJson(
      'a lighthouse at dusk',
      '--wait',
      '--width',
      '128',
      '--height',
      '96',
      '--steps',
      '3',
      '--seed',
      '4242',
      '--guidance',
      '6.5',
      '--negative-prompt',
      'blurry',
      '--out',
      out,
    );
    assert.equal(done.status, 'succeeded');
    assert.equal(done.width, 128);
    assert.equal(done.height, 96);
    assert.equal(done.steps, 3);
    assert.equal(done.seed, 4242);
    assert.equal(done.guidance_scale, 6.5);
    assert.equal(done.negative_prompt, 'blurry');
    assert.equal(done.outputs.length, 1);

    const image = await jpeg(out);
    assert.equal(image.format, 'jpeg');
    assert.equal(image.width, 128);
    assert.equal(image.height, 96);
    const output = done.outputs[0];
    assert.equal(image.bytes.length, output?.bytes);
    assert.equal(createHash('sha256').update(image.bytes).digest('hex'), output?.sha256);

    // The server agrees: this is the generation the CLI created, finished.
    const res = await stack.request(`/v1/generations/${done.id}`);
    assert.equal(((await res.json()) as GenerationResource).status, 'succeeded');
    stack.logs.off('line', onLine);
    assert.deepEqual(
      streamed,
      [`/v1/generations/${done.id}/events`],
      'one event stream, followed to its end',
    );
  });

  test('several images go to FILE-0.jpg, FILE-1.jpg; the summary names the seed and the files', async () => {
    const out = join(dir, 'many.jpg');
    const run = await submit(
      'two of them',
      '--wait',
      '--num-images',
      '2',
      '--width',
      '64',
      '--height',
      '80',
      '--steps',
      '2',
      '--seed',
      '9',
      '--out',
      out,
    );
    assert.equal(run.code, 0, run.stderr);
    const files = [join(dir, 'many-0.jpg'), join(dir, 'many-1.jpg')];
    assert.match(run.stdout, /^generation [0-9a-f-]{36} succeeded in \S+: seed 9, scheduler \S+, 64×80\n/);
    assert.ok(run.stdout.includes(`wrote ${files.join(', ')}`), run.stdout);
    assert.equal(run.stderr, '', 'no progress frames when stderr is not a terminal');
    for (const file of files) {
      const image = await jpeg(file);
      assert.deepEqual([image.format, image.width, image.height], ['jpeg', 64, 80]);
    }
    await assert.rejects(stat(out), { code: 'ENOENT' });
  });

  test('on a terminal, stderr shows a progress bar with the status', { skip: !hasScript() }, async () => {
    const out = join(dir, 'tty.jpg');
    const command = [
      process.execPath,
      'bin/easel.ts',
      'submit',
      'on a terminal',
      '--wait',
      '--width',
      '64',
      '--height',
      '64',
      '--steps',
      '2',
      '--out',
      out,
    ]
      .map((arg) => `'${arg.replaceAll("'", "'\\''")}'`)
      .join(' ');
    // util-linux script(1) gives the command a pseudo-terminal (stdout and stderr both go to it).
    const result = spawnSync('script', ['-qec', command, '/dev/null'], {
      cwd: repoRoot,
      env: clientEnv({ COLUMNS: '120' }),
      encoding: 'utf8',
    });
    assert.equal(result.status, 0, result.stdout + result.stderr);
    const screen = result.stdout;
    // The first frame is drawn from the create answer, so it is always there.
    assert.match(screen, /\r\[[#-]{10,30}\] +\d+% (queued|running|succeeded)/);
    assert.ok(screen.includes('\r\x1b[Kgeneration '), 'the bar is cleared before the summary');
    assert.match(screen, /succeeded in/);
    assert.equal((await jpeg(out)).width, 64);
  });
});

describe('easel submit --wait, the generation does not succeed', () => {
  test('canceled while the CLI waits: --json still prints it, one line says so, exit 1', async () => {
    const worker = stack.workers[0];
    assert.ok(worker);
    // A job longer than any client may ask for keeps the (only) worker busy, so ours stays queued.
    let blocker = '';
    const blockerStarted = worker.waitForLog(GENERATION_STARTED, (line) => line.generation_id === blocker);
    blocker = await stack.enqueue({ steps: 1000, width: 2048, height: 2048 });
    await blockerStarted;
    try {
      const key = `cancel-${Date.now()}`;
      const body = { prompt: 'behind a long one', width: 64, height: 64, steps: 2 };
      const waiting = submit(
        body.prompt,
        '--width',
        '64',
        '--height',
        '64',
        '--steps',
        '2',
        '--idempotency-key',
        key,
        '--wait',
        '--json',
      );
      // The same key and body name the same generation, whichever request arrives first.
      const created = await stack.request('/v1/generations', {
        method: 'POST',
        headers: { 'Idempotency-Key': key },
        body: JSON.stringify(body),
      });
      assert.ok(created.ok, await created.clone().text());
      const { id } = (await created.json()) as GenerationResource;
      const canceled = await stack.request(`/v1/generations/${id}/cancel`, { method: 'POST' });
      assert.equal(canceled.status, 200, await canceled.clone().text());

      const run = await waiting;
      assertFailure(run, new RegExp(`^easel submit: generation ${id} was canceled$`));
      const resource = JSON.parse(run.stdout) as GenerationResource;
      assert.equal(resource.id, id);
      assert.equal(resource.status, 'canceled');
    } finally {
      const stopped = worker.waitForLog(GENERATION_CANCELED, (line) => line.generation_id === blocker);
      await stack.request(`/v1/generations/${blocker}/cancel`, { method: 'POST' });
      await stopped;
    }
  });
});

describe('easel submit without --wait', () => {
  test('answers at once; the same --idempotency-key gives the same generation, another body a 422', async () => {
    const key = `cli-${Date.now()}`;
    const first = await submitJson(
      'idempotent',
      '--steps',
      '2',
      '--width',
      '64',
      '--height',
      '64',
      '--idempotency-key',
      key,
    );
    assert.match(first.id, /^[0-9a-f-]{36}$/);
    assert.ok(['queued', 'running', 'succeeded'].includes(first.status), first.status);
    const again = await submitJson(
      'idempotent',
      '--steps',
      '2',
      '--width',
      '64',
      '--height',
      '64',
      '--idempotency-key',
      key,
    );
    assert.equal(again.id, first.id);

    const other = await submit('something else', '--idempotency-key', key);
    assertFailure(other, /: idempotency_key_reused: .*\(Idempotency-Key: /);

    const human = await submit('plain', '--width', '64', '--height', '64', '--steps', '1');
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^generation [0-9a-f-]{36} (queued|running|succeeded)/);
  });
});

describe('easel submit errors', () => {
  test('API problems are one line `code: detail` with exit 1', async () => {
    assertFailure(
      await submit('bad size', '--width', '100'),
      /^easel submit: validation_failed: .*\(width: [^)]*8/,
    );
    assertFailure(
      await submit('bad sampler', '--scheduler', 'nope'),
      /^easel submit: validation_failed: .*scheduler/,
    );
    const wrongKey = await runEasel(['submit', 'x'], clientEnv({ EASEL_API_KEY: 'esl_not-a-key' }));
    assertFailure(wrongKey, /^easel submit: unauthorized: /);
  });

  test('an unreachable server is one line naming it, exit 1', async () => {
    // A port that was free a moment ago refuses at once; the create is retried a few times first
    // (it carries an Idempotency-Key, so that is safe).
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    server.close();
    await once(server, 'close');
    const run = await runEasel(['submit', 'x', '--url', `http://127.0.0.1:${port}`], clientEnv());
    assertFailure(run, new RegExp(`cannot reach http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
  });

  test('usage mistakes exit 2 with the usage text', async () => {
    for (const args of [
      [],
      ['a', 'b'],
      ['   '],
      ['x', '--out', 'x.jpg'],
      ['x', '--timeout', '5'],
      ['x', '--width', 'wide'],
      ['x', '--seed', '-1'],
      ['x', '--url', 'ftp://example.com'],
      ['x', '--nope'],
    ]) {
      const run = await submit(...args);
      assert.equal(run.code, 2, `easel submit ${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, /usage: easel submit PROMPT/);
    }
    const noKey = await runEasel(['submit', 'x'], clientEnv({ EASEL_API_KEY: '' }));
    assert.equal(noKey.code, 2);
    assert.match(noKey.stderr, /no API key: pass --key or set EASEL_API_KEY/);
  });
});

describe('progressView', () => {
  const base = {
    id: 'g',
    width: 64,
    height: 64,
    steps: 20,
    seed: 1,
    outputs: [],
  } satisfies Partial<Generation>;
  const now = Date.parse('2026-01-01T00:00:00Z');

  test('queued: position and ETA when the server sends them', () => {
    assert.equal(
      progressView({ ...base, status: 'queued', queue_position: 0 }, now).text,
      'queued, next in line',
    );
    assert.equal(
      progressView({ ...base, status: 'queued', queue_position: 3, eta: '2026-01-01T00:01:05Z' }, now).text,
      'queued, 3 ahead, ETA 1m05s',
    );
  });

  test('running: step/total from progress, or starting when the server has none yet (or no such field)', () => {
    const running = progressView(
      { ...base, status: 'running', progress: { step: 5, total: 20 }, eta: '2026-01-01T00:00:12Z' },
      now,
    );
    assert.deepEqual(running, { done: 5, total: 20, text: 'running, step 5/20, ETA 12s' });
    assert.deepEqual(progressView({ ...base, status: 'running' }, now), {
      done: 0,
      total: 20,
      text: 'running, starting',
    });
    assert.equal(
      progressView(
        { ...base, status: 'running', cancel_requested: true, progress: { step: 1, total: 20 } },
        now,
      ).text,
      'canceling, step 1/20',
    );
  });
});

function hasScript(): boolean {
  return spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;
}
