// `easel keys` against this file's own database, with the API running as its own process on the
// same database: what the CLI changes is what the next HTTP request sees.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createApiKey } from '../db/api-keys.repository.ts';
import { type Stack, startStack } from '../test/harness/stack.ts';
import { type CliRun, cleanEnv, runEasel } from './testing.ts';

let stack: Stack;

before(async () => {
  stack = await startStack('cli_keys');
  await stack.startApi();
});

after(async () => {
  await stack?.stop();
});

interface KeyJson {
  id: string;
  name: string;
  prefix: string;
  created_at: string;
  revoked_at: string | null;
  max_in_flight: number | null;
  admin: boolean;
  weight: number;
  images_per_day: number | null;
  accelerator_seconds_per_day: number | null;
  key?: string;
}

function keys(...args: string[]): Promise<CliRun> {
  return runEasel(['keys', ...args], cleanEnv({ DATABASE_URL: stack.database.url }));
}

async function ok(...args: string[]): Promise<string> {
  const run = await keys(...args);
  assert.equal(run.code, 0, `easel keys ${args.join(' ')} failed:\n${run.stderr}`);
  return run.stdout;
}

async function createJson(...args: string[]): Promise<KeyJson & { key: string }> {
  const created = JSON.parse(await ok('create', '--json', ...args)) as KeyJson;
  assert.ok(created.key, 'create --json prints the key');
  return created as KeyJson & { key: string };
}

function listGenerations(key: string) {
  return fetch(`${stack.baseUrl()}/v1/generations`, { headers: { Authorization: `Bearer ${key}` } });
}

function listWorkers(key: string) {
  return fetch(`${stack.baseUrl()}/v1/workers`, { headers: { Authorization: `Bearer ${key}` } });
}

function createGeneration(key: string, prompt: string) {
  return fetch(`${stack.baseUrl()}/v1/generations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt, width: 64, height: 64, steps: 1 }),
  });
}

/** One line on stderr, prefixed with the command, and exit status 1. */
function assertFailure(run: CliRun, pattern: RegExp) {
  assert.equal(run.code, 1, run.stderr);
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0] as string, /^easel keys: /);
  assert.match(lines[0] as string, pattern);
  assert.equal(run.stdout, '');
}

describe('easel keys create', () => {
  test('--json: the key once, stored only as its SHA-256; the API accepts it', async () => {
    const created = await createJson('--name', 'ci runner', '--max-in-flight', '7');
    assert.match(created.key, /^esl_[A-Za-z0-9_-]{43}$/);
    assert.equal(created.prefix, created.key.slice(0, 12));
    assert.equal(created.name, 'ci runner');
    assert.equal(created.max_in_flight, 7);
    assert.equal(created.admin, false);
    assert.equal(created.revoked_at, null);
    assert.ok(!Number.isNaN(Date.parse(created.created_at)));

    const row = await stack.database.db
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', created.id)
      .executeTakeFirstOrThrow();
    assert.equal(row.key_hash, createHash('sha256').update(created.key).digest('hex'));
    assert.ok(!JSON.stringify(row).includes(created.key), 'the clear key is stored nowhere');
    assert.equal(row.max_in_flight, 7);
    assert.equal(row.admin, false);

    assert.equal((await listGenerations(created.key)).status, 200);
    // Not an operator key: the fleet view is refused.
    assert.equal((await listWorkers(created.key)).status, 403);
  });

  test('--admin makes an operator key: GET /v1/workers answers it', async () => {
    const created = await createJson('--name', 'operator', '--admin');
    assert.equal(created.admin, true);
    const row = await stack.database.db
      .selectFrom('api_keys')
      .select('admin')
      .where('id', '=', created.id)
      .executeTakeFirstOrThrow();
    assert.equal(row.admin, true);
    const res = await listWorkers(created.key);
    assert.equal(res.status, 200);
    const body = (await res.json()) as { object: string; data: unknown[] };
    assert.equal(body.object, 'list');
    assert.ok(Array.isArray(body.data));
    assert.equal((await listGenerations(created.key)).status, 200);

    const human = await keys('create', '--name', 'operator-2', '--admin');
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stderr, /^created admin API key 'operator-2'/);
    assert.equal((await listWorkers(human.stdout.trim())).status, 200);
  });

  test('without --json: only the key on stdout, its id, name and prefix on stderr', async () => {
    const run = await keys('create', '--name', 'human');
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split('\n');
    assert.equal(lines.length, 1);
    const key = lines[0] as string;
    assert.match(key, /^esl_/);
    const row = await stack.database.db
      .selectFrom('api_keys')
      .selectAll()
      .where('prefix', '=', key.slice(0, 12))
      .executeTakeFirstOrThrow();
    assert.match(run.stderr, new RegExp(`'human' \\(id ${row.id}, prefix ${row.prefix}\\)`));
    assert.match(run.stderr, /max in flight: server default/);
    assert.match(run.stderr, /shown this once/);
    assert.ok(!run.stderr.includes(key), 'the key is printed once');
  });

  test('usage mistakes exit 2 with the usage text; a bad database exits 1 with one line', async () => {
    for (const args of [
      ['create'],
      ['create', '--name', '  '],
      ['create', '--name', 'x', '--max-in-flight', '0'],
      ['create', '--name', 'x', '--bogus'],
      ['revoke'],
      ['set', 'esl_whatever'],
      ['frobnicate'],
    ]) {
      const run = await keys(...args);
      assert.equal(run.code, 2, `easel keys ${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stderr, /usage:\n {2}easel keys create/);
    }
    const noUrl = await runEasel(['keys', 'list'], cleanEnv());
    assert.equal(noUrl.code, 2);
    assert.match(noUrl.stderr, /DATABASE_URL/);

    const down = await runEasel(
      ['keys', 'list', '--database-url', 'postgres://easel:hunter2@127.0.0.1:1/nowhere'],
      cleanEnv(),
    );
    assertFailure(
      down,
      /cannot use the database at postgres:\/\/easel:\*\*\*@127\.0\.0\.1:1\/nowhere: .*ECONNREFUSED/,
    );
  });
});

describe('easel keys list', () => {
  test('shows id, name, prefix, times, cap and admin flag of every key, never a key', async () => {
    const a = await createJson('--name', 'listed-a', '--max-in-flight', '3');
    const b = await createJson('--name', 'listed-b', '--admin');
    await ok('revoke', b.prefix);

    const table = await ok('list');
    const [header, ...rows] = table.trimEnd().split('\n');
    assert.match(
      header as string,
      /^ID\s+NAME\s+PREFIX\s+CREATED\s+REVOKED\s+MAX IN FLIGHT\s+ADMIN\s+WEIGHT\s+IMAGES\/DAY\s+ACCEL S\/DAY$/,
    );
    const rowA = rows.find((r) => r.startsWith(a.id));
    const rowB = rows.find((r) => r.startsWith(b.id));
    assert.ok(rowA && rowB, table);
    assert.match(
      rowA,
      new RegExp(
        `^${a.id}\\s+listed-a\\s+${a.prefix}\\s+\\d{4}-\\d\\d-\\d\\dT[\\d:]+Z\\s+-\\s+3\\s+no\\s+1\\s+unlimited\\s+unlimited$`,
      ),
    );
    assert.match(
      rowB,
      /\d{4}-\d\d-\d\dT[\d:]+Z\s+\d{4}-\d\d-\d\dT[\d:]+Z\s+server default\s+yes\s+1\s+unlimited\s+unlimited$/,
    );

    const json = await ok('list', '--json');
    const listed = JSON.parse(json) as KeyJson[];
    assert.equal(listed.length, rows.length);
    const jsonA = listed.find((k) => k.id === a.id);
    assert.deepEqual(jsonA && Object.keys(jsonA).sort(), [
      'accelerator_seconds_per_day',
      'admin',
      'created_at',
      'id',
      'images_per_day',
      'max_in_flight',
      'name',
      'prefix',
      'revoked_at',
      'weight',
    ]);
    assert.equal(jsonA?.max_in_flight, 3);
    assert.equal(jsonA?.admin, false);
    assert.equal(listed.find((k) => k.id === b.id)?.admin, true);
    assert.ok(listed.find((k) => k.id === b.id)?.revoked_at);
    for (const output of [table, json]) {
      assert.ok(!output.includes(a.key) && !output.includes(b.key), 'no key in a listing');
      assert.ok(!output.includes(stack.apiKey));
    }
  });
});

describe('easel keys revoke', () => {
  test('by prefix: the running API answers the next request with 401', async () => {
    const created = await createJson('--name', 'to-revoke');
    assert.equal((await listGenerations(created.key)).status, 200);

    const out = await ok('revoke', created.prefix);
    assert.match(
      out,
      new RegExp(`revoked API key 'to-revoke' \\(id ${created.id}, prefix ${created.prefix}\\)`),
    );

    const refused = await listGenerations(created.key);
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get('content-type'), 'application/problem+json');
    assert.equal(((await refused.json()) as { code: string }).code, 'unauthorized');
    assert.equal((await createGeneration(created.key, 'after revocation')).status, 401);
    // Other keys are untouched.
    assert.equal((await listGenerations(stack.apiKey)).status, 200);

    const again = await keys('revoke', created.id, '--json');
    assert.equal(again.code, 0, again.stderr);
    const row = JSON.parse(again.stdout) as KeyJson;
    assert.equal(row.id, created.id);
    assert.ok(row.revoked_at);
    const human = await ok('revoke', created.id);
    assert.match(human, new RegExp(`was already revoked at ${row.revoked_at.replace(/\.\d{3}Z$/, 'Z')}`));
  });

  test('by id and by the whole key', async () => {
    const byId = await createJson('--name', 'by-id');
    const byKey = await createJson('--name', 'by-key');
    await ok('revoke', byId.id);
    await ok('revoke', byKey.key);
    assert.equal((await listGenerations(byId.key)).status, 401);
    assert.equal((await listGenerations(byKey.key)).status, 401);
  });

  test('an unknown reference or a prefix shared by two keys: exit 1, one line, nothing revoked', async () => {
    assertFailure(await keys('revoke', 'esl_nothere0'), /no API key with id, prefix or key 'esl_nothere0'/);
    assertFailure(
      await keys('revoke', '00000000-0000-4000-8000-000000000000'),
      /no API key with id, prefix or key/,
    );

    // 48 random bits make a shared prefix unlikely, not impossible; it must never revoke both.
    const one = await createApiKey(stack.database.db, {
      name: 'twin-1',
      key: `esl_SAMEpref${'a'.repeat(35)}`,
    });
    const two = await createApiKey(stack.database.db, {
      name: 'twin-2',
      key: `esl_SAMEpref${'b'.repeat(35)}`,
    });
    assertFailure(
      await keys('revoke', 'esl_SAMEpref'),
      new RegExp(`matches 2 keys \\(ids (${one.apiKey.id}|${two.apiKey.id}), .*\\); give the id`),
    );
    assert.equal((await listGenerations(one.key)).status, 200);
    assert.equal((await listGenerations(two.key)).status, 200);
  });
});

describe('easel keys set', () => {
  test('--max-in-flight takes effect on the next request; default goes back to the server cap', async () => {
    const created = await createJson('--name', 'capped');
    // No worker runs in this file, so every generation stays queued (in flight).
    assert.equal((await createGeneration(created.key, 'first')).status, 202);

    const set = JSON.parse(await ok('set', created.prefix, '--max-in-flight', '1', '--json')) as KeyJson;
    assert.equal(set.max_in_flight, 1);
    const refused = await createGeneration(created.key, 'second');
    assert.equal(refused.status, 429);
    assert.equal(((await refused.json()) as { code: string }).code, 'too_many_in_flight');

    const human = await ok('set', created.id, '--max-in-flight', 'default', '--name', 'uncapped');
    assert.match(human, /'uncapped' .* max in flight: server default/);
    assert.equal((await createGeneration(created.key, 'third')).status, 202);
  });

  test('--weight and the daily quotas are stored, shown, refused when out of range, and lifted with none', async () => {
    const created = await createJson('--name', 'tenant', '--weight', '3', '--images-per-day', '2');
    assert.equal(created.weight, 3);
    assert.equal(created.images_per_day, 2);
    assert.equal(created.accelerator_seconds_per_day, null);
    assert.equal((await createGeneration(created.key, 'one')).status, 202);
    assert.equal((await createGeneration(created.key, 'two')).status, 202);
    const refused = await createGeneration(created.key, 'three');
    assert.equal(refused.status, 429);
    assert.equal(((await refused.json()) as { code: string }).code, 'quota_exceeded');

    const human = await ok(
      'set',
      created.prefix,
      '--images-per-day',
      'none',
      '--accelerator-seconds-per-day',
      '60',
    );
    assert.match(human, /weight: 3, images per day: unlimited, accelerator seconds per day: 60/);
    assert.equal((await createGeneration(created.key, 'three')).status, 202);

    const set = JSON.parse(await ok('set', created.id, '--weight', '1', '--json')) as KeyJson;
    assert.equal(set.weight, 1);
    assert.equal(set.accelerator_seconds_per_day, 60);
    for (const [flag, value, message] of [
      ['--weight', '0', /--weight must be an integer from 1 to 100/],
      ['--weight', '101', /--weight must be an integer from 1 to 100/],
      ['--images-per-day', '-1', /--images-per-day must be an integer from 0 to/],
    ] as const) {
      const run = await keys('set', created.id, `${flag}=${value}`);
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr.split('\n')[0] as string, message);
    }
  });
});

test('create prints the webhook secret once; rotate-webhook-secret keeps the old one valid for the overlap', async () => {
  const created = (await createJson('--name', 'hooks')) as KeyJson & { key: string; webhook_secret: string };
  assert.match(created.webhook_secret, /^whsec_/);
  const secretRes = await fetch(`${stack.baseUrl()}/v1/webhooks/secret`, {
    headers: { Authorization: `Bearer ${created.key}` },
  });
  assert.equal(secretRes.status, 200);
  assert.ok(JSON.stringify(await secretRes.json()).includes(created.webhook_secret));

  const rotated = JSON.parse(
    await ok('rotate-webhook-secret', created.prefix, '--overlap', '600', '--json'),
  ) as {
    webhook_secret: string;
  };
  assert.match(rotated.webhook_secret, /^whsec_/);
  assert.notEqual(rotated.webhook_secret, created.webhook_secret);
  const row = await stack.database.db
    .selectFrom('api_keys')
    .select(['webhook_secret', 'webhook_secret_previous', 'webhook_secret_previous_expires_at'])
    .where('id', '=', created.id)
    .executeTakeFirstOrThrow();
  assert.equal(row.webhook_secret, rotated.webhook_secret);
  assert.equal(row.webhook_secret_previous, created.webhook_secret);
  assert.ok(row.webhook_secret_previous_expires_at && row.webhook_secret_previous_expires_at > new Date());
});
