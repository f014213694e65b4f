// `easel usage` against a real API process over HTTP, run as a user runs it; the ledger rows are
// written the way workers write them (db/usage.repository.ts).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { UsageResource } from '../api/usage.schemas.ts';
import { createApiKey } from '../db/api-keys.repository.ts';
import { recordUsage } from '../db/usage.repository.ts';
import { type Stack, startStack } from '../test/harness/stack.ts';
import { type CliRun, cleanEnv, runEasel } from './testing.ts';

let stack: Stack;
let dir = '';
let user: { id: string; key: string };
let admin: { id: string; key: string };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'easel-usage-'));
  stack = await startStack('cli_usage');
  await stack.startApi();
  const db = stack.database.db;
  const created = await createApiKey(db, { name: 'integrator' });
  user = { id: created.apiKey.id, key: created.key };
  const operator = await createApiKey(db, { name: 'operator', admin: true });
  admin = { id: operator.apiKey.id, key: operator.key };
  const rows = [
    ['2024-02-29T00:00:00.000Z', 'sd15', 'succeeded', 1_500_000, 2, 100],
    ['2024-02-29T23:59:59.999Z', 'demo', 'failed', 250_000, 0, 10],
    ['2024-03-01T12:00:00.000Z', 'sd15', 'succeeded', 1_234_567, 1, 50],
  ] as const;
  for (const [at, model, outcome, us, images, pixelSteps] of rows) {
    await recordUsage(db, {
      generation_id: randomUUID(),
      attempt: 1,
      api_key_id: user.id,
      model,
      outcome,
      recorded_at: new Date(at),
      accelerator_us: us,
      images,
      pixel_steps: pixelSteps,
    });
  }
});

after(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** `key`: EASEL_API_KEY (null: none set). */
function usage(args: string[], key: string | null = user.key): Promise<CliRun> {
  const env = cleanEnv({ EASEL_URL: stack.baseUrl(), EASEL_DATA_DIR: dir });
  if (key) env.EASEL_API_KEY = key;
  return runEasel(['usage', ...args], env);
}

function assertFailure(run: CliRun, pattern: RegExp) {
  assert.equal(run.code, 1, run.stderr);
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0] as string, /^easel usage: /);
  assert.match(lines[0] as string, pattern);
}

const RANGE = ['--from', '2024-02-29', '--to', '2024-03-02'];

test('prints an aligned table per UTC day with totals, accelerator time in seconds', async () => {
  const run = await usage(RANGE);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(
    run.stdout,
    [
      `usage of key ${user.id} from 2024-02-29T00:00:00.000Z to 2024-03-02T00:00:00.000Z`,
      'day         attempts  generations  images  pixel-steps  accelerator',
      '2024-02-29         2            1       2          110      1.750 s',
      '2024-03-01         1            1       1           50      1.235 s',
      'total              3            2       3          160      2.985 s',
      '',
    ].join('\n'),
  );
});

test('--group-by model --json prints the server answer as it came', async () => {
  const run = await usage([...RANGE, '--group-by', 'model', '--json']);
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.trim().split('\n');
  assert.equal(lines.length, 1, 'one JSON object on stdout');
  const body = JSON.parse(lines[0] as string) as UsageResource;
  assert.equal(body.group_by, 'model');
  assert.deepEqual(
    body.data.map((group) => ('model' in group ? [group.model, group.attempts, group.accelerator_ms] : [])),
    [
      ['demo', 1, 250],
      ['sd15', 2, 2734.567],
    ],
  );
  assert.equal(body.total.accelerator_ms, 2984.567);
});

test('a range without usage says so; the total row stays', async () => {
  const run = await usage(['--from', '2023-01-01', '--to', '2023-02-01', '--group-by', 'model']);
  assert.equal(run.code, 0, run.stderr);
  const lines = run.stdout.trim().split('\n');
  assert.match(lines[1] as string, /^model\s+attempts/);
  assert.equal(lines[2], '(no usage in this range)');
  assert.match(lines[3] as string, /^total\s+0\s+0\s+0\s+0\s+0\.000 s$/);
});

test('--key needs an admin key: forbidden in one line, else every key or one named key', async () => {
  assertFailure(await usage([...RANGE, '--key', 'all']), /^easel usage: forbidden: /);

  const all = await usage([...RANGE, '--key', 'all', '--api-key', admin.key], null);
  assert.equal(all.code, 0, all.stderr);
  assert.match(all.stdout, /^usage of all keys from /);
  assert.match(all.stdout, /^total\s+3\s+2\s+3\s+160\s+2\.985 s$/m);

  const named = await usage([...RANGE, '--key', user.id, '--json'], admin.key);
  assert.equal(named.code, 0, named.stderr);
  assert.equal((JSON.parse(named.stdout) as UsageResource).api_key_id, user.id);
});

test("the server's refusals print one line naming the parameter; mistakes in the call exit 2", async () => {
  assertFailure(
    await usage(['--from', '2024-03-02', '--to', '2024-03-01']),
    /validation_failed: .*\(from: must be before to\)$/,
  );
  assertFailure(await usage(['--from', 'last week']), /validation_failed: .*\(from: must be a date/);

  const badGroup = await usage(['--group-by', 'week']);
  assert.equal(badGroup.code, 2);
  assert.match(badGroup.stderr, /--group-by must be one of day, model, got 'week'/);
  assert.match(badGroup.stderr, /usage: easel usage/);

  const noKey = await usage([], null);
  assert.equal(noKey.code, 2);
  assert.match(noKey.stderr, /no API key: pass --api-key or set EASEL_API_KEY/);
});
