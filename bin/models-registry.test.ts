// `easel models list|register|retire` against this file's own database: what the CLI writes is the
// models table the API and the workers read, with the same capabilities a worker would announce.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ModelResource } from '../api/models.schemas.ts';
import { createApiKey } from '../db/api-keys.repository.ts';
import { insertGeneration } from '../db/generations.repository.ts';
import { announceModel, findModel, registerModel } from '../db/models.repository.ts';
import type { ModelCapabilities } from '../db/types.ts';
import { registerWorker } from '../db/workers.repository.ts';
import { writeDemoModel } from '../gpu-worker/models/demo/sd-model.ts';
import { readModelCard } from '../gpu-worker/models/model-card.ts';
import { createTestDatabase, type TestDatabase } from '../test/harness/database.ts';
import { type CliRun, cleanEnv, runEasel } from './testing.ts';

let t: TestDatabase;
let dir: string;
let demo: string;

const CAPABILITIES: ModelCapabilities = {
  samplers: ['euler', 'euler_a'],
  karras_samplers: ['euler'],
  default_sampler: 'euler_a',
  width: { min: 256, max: 1024, multiple_of: 64, default: 768 },
  height: { min: 256, max: 1024, multiple_of: 64, default: 512 },
  steps: { min: 1, max: 8, default: 4 },
  guidance_scale: { min: 0, max: 2, default: 0 },
  negative_prompt: false,
  languages: ['en'],
  max_images: 1,
};

before(async () => {
  t = await createTestDatabase('cli_models');
  dir = await mkdtemp(join(tmpdir(), 'easel-models-registry-'));
  demo = join(dir, 'demo');
  await writeDemoModel(demo);
});

after(async () => {
  await t?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function models(...args: string[]): Promise<CliRun> {
  return runEasel(['models', ...args], cleanEnv({ DATABASE_URL: t.url }));
}

async function ok(...args: string[]): Promise<string> {
  const run = await models(...args);
  assert.equal(run.code, 0, `easel models ${args.join(' ')} failed:\n${run.stderr}`);
  return run.stdout;
}

/** One line on stderr, prefixed with the command, and exit status 1. */
function assertFailure(run: CliRun, pattern: RegExp) {
  assert.equal(run.code, 1, run.stderr);
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${run.stderr}`);
  assert.match(lines[0] as string, /^easel models: /);
  assert.match(lines[0] as string, pattern);
  assert.equal(run.stdout, '');
}

async function capabilitiesFile(name: string, value: unknown): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, JSON.stringify(value));
  return file;
}

describe('easel models register', () => {
  test('--dir: the family and capabilities a worker reads from the folder', async () => {
    const out = await ok('register', 'sd-demo', '--dir', demo);
    const card = await readModelCard(demo, 'sd-demo');
    const { steps, width, height, default_sampler: sampler } = card.capabilities;
    assert.equal(
      out,
      `registered model 'sd-demo' (stable-diffusion; defaults ${sampler}, ${steps.default} steps, ` +
        `${width.default}x${height.default}); live workers: 0\n`,
    );
    const row = await findModel(t.db, 'sd-demo');
    assert.equal(row?.family, card.family.name);
    assert.equal(row?.family, 'stable-diffusion');
    assert.deepEqual(row?.capabilities, card.capabilities);
    // Only a worker hashes the files; nothing announced yet.
    assert.equal(row?.content_hash, null);
    assert.equal(row?.announced_at, null);
    assert.equal(row?.retired_at, null);
  });

  test("--dir honours the folder's easel-model.json, and registering again updates", async () => {
    const narrowed = join(dir, 'narrowed');
    await cp(demo, narrowed, { recursive: true });
    await writeFile(
      join(narrowed, 'easel-model.json'),
      JSON.stringify({
        id: 'ignored-id',
        capabilities: { samplers: ['euler'], steps: { max: 8, default: 4 } },
      }),
    );
    const created = JSON.parse(await ok('register', 'narrow', '--dir', narrowed, '--json')) as ModelResource;
    assert.equal(created.id, 'narrow', 'the ID argument wins over the card');
    assert.deepEqual(created.capabilities.samplers, ['euler']);
    assert.deepEqual(created.capabilities.steps, { min: 1, max: 8, default: 4 });
    assert.equal(created.defaults.steps, 4);
    assert.equal(created.status, 'no_workers');

    await writeFile(join(narrowed, 'easel-model.json'), JSON.stringify({ capabilities: { max_images: 2 } }));
    assert.match(await ok('register', 'narrow', '--dir', narrowed), /^updated model 'narrow' /);
    const row = await findModel(t.db, 'narrow');
    assert.equal(row?.capabilities.max_images, 2);
    assert.deepEqual(row?.capabilities.steps, (await readModelCard(demo)).capabilities.steps);
  });

  test('--family and --capabilities: a whole capabilities object, validated', async () => {
    const file = await capabilitiesFile('turbo.json', CAPABILITIES);
    const json = JSON.parse(
      await ok('register', 'turbo', '--family', 'stable-diffusion', '--capabilities', file, '--json'),
    ) as ModelResource;
    assert.equal(json.object, 'model');
    assert.equal(json.family, 'stable-diffusion');
    assert.deepEqual(json.capabilities, CAPABILITIES);
    assert.deepEqual(json.defaults, {
      width: 768,
      height: 512,
      steps: 4,
      guidance_scale: 0,
      scheduler: 'euler_a',
    });
    assert.deepEqual((await findModel(t.db, 'turbo'))?.capabilities, CAPABILITIES);

    const { max_images: _, ...partial } = CAPABILITIES;
    assertFailure(
      await models(
        'register',
        'bad',
        '--family',
        'stable-diffusion',
        '--capabilities',
        await capabilitiesFile('partial.json', partial),
      ),
      /capabilities file .*partial\.json: max_images: /,
    );
    assertFailure(
      await models(
        'register',
        'bad',
        '--family',
        'stable-diffusion',
        '--capabilities',
        await capabilitiesFile('karras.json', { ...CAPABILITIES, karras_samplers: ['ddim'] }),
      ),
      /karras_samplers: must be a subset of samplers/,
    );
    const notJson = join(dir, 'not.json');
    await writeFile(notJson, '{ samplers: ');
    assertFailure(
      await models('register', 'bad', '--family', 'stable-diffusion', '--capabilities', notJson),
      /capabilities file .*not\.json: /,
    );
    assertFailure(
      await models(
        'register',
        'bad',
        '--family',
        'stable-diffusion',
        '--capabilities',
        join(dir, 'missing.json'),
      ),
      /capabilities file .*missing\.json does not exist/,
    );
    assert.equal(await findModel(t.db, 'bad'), undefined, 'nothing registered');
  });

  test('a folder that is not a model: exit 1 naming it', async () => {
    assertFailure(
      await models('register', 'nothing', '--dir', join(dir, 'nope')),
      /model folder .*nope does not exist/,
    );
    const empty = join(dir, 'empty');
    await cp(join(demo, 'scheduler'), join(empty, 'scheduler'), { recursive: true });
    assertFailure(
      await models('register', 'empty', '--dir', empty),
      /model folder .*empty: model_index\.json/,
    );
    assert.equal(await findModel(t.db, 'empty'), undefined);
  });
});

describe('easel models list', () => {
  test('a table of every model: family, status, live workers, queued, default sampler, steps, size', async () => {
    await registerModel(t.db, { id: 'busy', family: 'stable-diffusion', capabilities: CAPABILITIES });
    await registerWorker(t.db, {
      id: 'gpu-busy',
      hostname: 'box',
      pid: 1,
      provider: 'cpu',
      model: { dir: '/models/busy' },
      modelId: 'busy',
      translator: null,
    });
    const { apiKey } = await createApiKey(t.db, { name: 'cli-models' });
    for (const i of [1, 2, 3]) {
      await insertGeneration(t.db, {
        id: randomUUID(),
        api_key_id: apiKey.id,
        model: 'busy',
        prompt: `queued ${i}`,
        negative_prompt: '',
        width: 768,
        height: 512,
        steps: 4,
        guidance_scale: 0,
        num_images: 1,
        seed: i,
      });
    }
    await announceModel(t.db, {
      id: 'announced',
      family: 'stable-diffusion',
      capabilities: CAPABILITIES,
      contentHash: `sha256:${'0'.repeat(64)}`,
    });

    const table = await ok('list');
    const [header, ...rows] = table.trimEnd().split('\n');
    assert.match(header as string, /^ID\s+FAMILY\s+STATUS\s+LIVE WORKERS\s+QUEUED\s+SAMPLER\s+STEPS\s+SIZE$/);
    assert.deepEqual(
      rows.map((row) => row.split(/\s+/)[0]),
      ['announced', 'busy', 'narrow', 'sd-demo', 'turbo'],
      'by id',
    );
    const row = (id: string) => rows.find((r) => r.startsWith(`${id} `));
    assert.match(row('busy') ?? '', /^busy\s+stable-diffusion\s+available\s+1\s+3\s+euler_a\s+4\s+768x512$/);
    assert.match(
      row('announced') ?? '',
      /^announced\s+stable-diffusion\s+no_workers\s+0\s+0\s+euler_a\s+4\s+768x512$/,
    );

    const json = JSON.parse(await ok('list', '--json')) as ModelResource[];
    assert.equal(json.length, rows.length);
    const busy = json.find((m) => m.id === 'busy');
    assert.equal(busy?.status, 'available');
    assert.equal(busy?.live_workers, 1);
    assert.equal(busy?.queued, 3);
    assert.equal(json.find((m) => m.id === 'announced')?.content_hash, `sha256:${'0'.repeat(64)}`);

    // The API's WORKER_STALE_SECONDS: a worker silent for a minute is live only with more grace.
    await t.db
      .updateTable('workers')
      .set({ last_heartbeat_at: new Date(Date.now() - 60_000) })
      .where('id', '=', 'gpu-busy')
      .execute();
    assert.match(
      (await ok('list')).split('\n').find((r) => r.startsWith('busy ')) ?? '',
      /no_workers\s+0\s+3/,
    );
    const lenient = await runEasel(
      ['models', 'list'],
      cleanEnv({ DATABASE_URL: t.url, WORKER_STALE_SECONDS: '120' }),
    );
    assert.equal(lenient.code, 0, lenient.stderr);
    assert.match(lenient.stdout.split('\n').find((r) => r.startsWith('busy ')) ?? '', /available\s+1\s+3/);
  });

  test('an empty registry says how to fill it, on stderr', async () => {
    const empty = await createTestDatabase('cli_models_empty');
    try {
      const run = await runEasel(['models', 'list'], cleanEnv({ DATABASE_URL: empty.url }));
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, '');
      assert.match(run.stderr, /no models yet.*easel models register/);
      const json = await runEasel(['models', 'list', '--json'], cleanEnv({ DATABASE_URL: empty.url }));
      assert.equal(json.stdout, '[]\n');
    } finally {
      await empty.drop();
    }
  });
});

describe('easel models retire', () => {
  test('retires a model; again says so; register returns it to service', async () => {
    await registerModel(t.db, { id: 'old', family: 'stable-diffusion', capabilities: CAPABILITIES });
    assert.equal(
      await ok('retire', 'old'),
      "retired model 'old': the API refuses new generations for it; 0 queued generations still run\n",
    );
    const row = await findModel(t.db, 'old');
    assert.ok(row?.retired_at);
    const stamp = row.retired_at.toISOString().replace(/\.\d{3}Z$/, 'Z');
    assert.equal(await ok('retire', 'old'), `model 'old' was already retired at ${stamp}\n`);
    assert.equal(
      (await findModel(t.db, 'old'))?.retired_at?.getTime(),
      row.retired_at.getTime(),
      'unchanged',
    );

    const listed = JSON.parse(await ok('list', '--json')) as ModelResource[];
    assert.equal(listed.find((m) => m.id === 'old')?.status, 'retired');
    assert.match(
      (await ok('list')).split('\n').find((r) => r.startsWith('old ')) ?? '',
      /^old\s+stable-diffusion\s+retired\s/,
    );

    const file = await capabilitiesFile('old.json', CAPABILITIES);
    assert.equal(
      await ok('register', 'old', '--family', 'stable-diffusion', '--capabilities', file),
      "returned model 'old' to service (stable-diffusion; defaults euler_a, 4 steps, 768x512); live workers: 0\n",
    );
    assert.equal((await findModel(t.db, 'old'))?.retired_at, null);
  });

  test('--json prints the retired model; the queued count is what still runs', async () => {
    const json = JSON.parse(await ok('retire', 'busy', '--json')) as ModelResource;
    assert.equal(json.id, 'busy');
    assert.equal(json.status, 'retired');
    assert.equal(json.queued, 3);
    assert.ok(json.retired_at);
  });

  test('an unknown model: exit 1, one line', async () => {
    assertFailure(await models('retire', 'nothere'), /no model 'nothere'; `easel models list` shows them/);
  });
});

test('usage mistakes exit 2 with the usage text; a bad database exits 1 with one line', async () => {
  const file = await capabilitiesFile('usage.json', CAPABILITIES);
  for (const args of [
    ['register'],
    ['register', 'a', 'b', '--dir', demo],
    ['register', 'Not A Model', '--dir', demo],
    ['register', 'x'],
    ['register', 'x', '--dir', demo, '--family', 'stable-diffusion'],
    ['register', 'x', '--family', 'stable-diffusion'],
    ['register', 'x', '--capabilities', file],
    ['register', 'x', '--family', 'flux', '--capabilities', file],
    ['retire'],
    ['list', 'extra'],
    ['list', '--bogus'],
    ['frobnicate'],
  ]) {
    const run = await models(...args);
    assert.equal(run.code, 2, `easel models ${args.join(' ')}: ${run.stderr}`);
    assert.match(run.stderr, /usage:\n {2}easel models demo/);
    assert.match(run.stderr, /easel models register ID --dir DIR/);
  }
  const family = await models('register', 'x', '--family', 'flux', '--capabilities', file);
  assert.match(family.stderr, /--family must be one of stable-diffusion, kandinsky, got 'flux'/);

  const noUrl = await runEasel(['models', 'list'], cleanEnv());
  assert.equal(noUrl.code, 2);
  assert.match(noUrl.stderr, /DATABASE_URL/);

  const down = await runEasel(
    ['models', 'list', '--database-url', 'postgres://easel:hunter2@127.0.0.1:1/nowhere'],
    cleanEnv(),
  );
  assertFailure(
    down,
    /cannot use the database at postgres:\/\/easel:\*\*\*@127\.0\.0\.1:1\/nowhere: .*ECONNREFUSED/,
  );
});
