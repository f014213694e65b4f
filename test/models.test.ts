// Several models, one fleet: two workers each hold a different model warm (the demo model, and a
// second demo export whose easel-model.json makes it a turbo-like model with other capabilities)
// and every generation runs on a worker of its own model. The API refuses what the chosen model
// cannot run, accepts a model whose workers are all down (it waits, then runs when one starts),
// and one model's crashed worker does not disturb the other model's jobs.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ServiceProcess } from '../bin/local/service-process.ts';
import { findGeneration } from '../db/generations.repository.ts';
import { registerModel } from '../db/models.repository.ts';
import { writeDemoModel } from '../gpu-worker/models/demo/sd-model.ts';
import { MODEL_CARD_FILE, readModelCard } from '../gpu-worker/models/model-card.ts';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import { GENERATION_STARTED, GENERATION_SUCCEEDED } from '../shared/log-events.ts';
import { DEMO_MODEL_ID } from './harness/models.ts';
import { type Stack, startStack } from './harness/stack.ts';

const TURBO = 'turbo';
const TURBO_CARD = {
  id: TURBO,
  capabilities: {
    samplers: ['euler_a', 'lcm'],
    steps: { min: 1, max: 8, default: 4 },
    guidance_scale: { min: 0, max: 2, default: 0 },
    width: { min: 64, max: 1024, multiple_of: 64, default: 128 },
    height: { min: 64, max: 1024, multiple_of: 64, default: 128 },
    negative_prompt: false,
    languages: ['en', 'ru'],
    max_images: 2,
  },
};

let stack: Stack;
let demoWorker: ServiceProcess;
let turboWorker: ServiceProcess;
let turboDir: string;

async function writeModel(name: string, card: object): Promise<string> {
  const dir = join(stack.dataDir, 'models', name);
  await writeDemoModel(dir);
  await writeFile(join(dir, MODEL_CARD_FILE), JSON.stringify(card));
  return dir;
}

const WORKER_ENV = { WARMUP_SIZE: '64', QUEUE_POLL_SECONDS: '3600' };

before(async () => {
  stack = await startStack('models');
  await stack.startApi({ DEFAULT_MODEL: DEMO_MODEL_ID, MODEL_CACHE_SECONDS: '0' });
  demoWorker = await stack.startWorker({ ...WORKER_ENV, WORKER_ID: 'demo-1' });
  turboDir = await writeModel('turbo-export', TURBO_CARD);
  // The demo worker built the demo translator; the turbo model reads Russian natively, so the
  // translator must be what it skips, not what it lacks.
  turboWorker = await stack.startWorker({
    ...WORKER_ENV,
    WORKER_ID: 'turbo-1',
    MODEL_DIR: turboDir,
    TRANSLATOR_DIR: join(stack.dataDir, 'models', 'demo-translator'),
  });
});

after(async () => {
  await stack?.stop();
});

async function create(
  body: Record<string, unknown>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await stack.request('/v1/generations', { method: 'POST', body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function read(id: string): Promise<GenerationResource> {
  return (await (await stack.request(`/v1/generations/${id}`)).json()) as GenerationResource;
}

/** Resolves with the generation once `worker` logged its success. */
async function succeededOn(worker: ServiceProcess, id: string): Promise<GenerationResource> {
  await worker.waitForLog(GENERATION_SUCCEEDED, (line) => line.generation_id === id, { past: true });
  return read(id);
}

test("each generation runs on a worker holding its model, with that model's defaults", {
  timeout: 60_000,
}, async () => {
  const ids: { id: string; model: string }[] = [];
  for (let i = 0; i < 3; i++) {
    const demo = await create({ prompt: `demo ${i}`, width: 64, height: 64, steps: 2 });
    assert.equal(demo.status, 202, JSON.stringify(demo.body));
    assert.equal(demo.body.model, DEMO_MODEL_ID, 'no model: the default');
    ids.push({ id: String(demo.body.id), model: DEMO_MODEL_ID });
    const turbo = await create({ model: TURBO, prompt: `turbo ${i}` });
    assert.equal(turbo.status, 202, JSON.stringify(turbo.body));
    assert.deepEqual(
      [turbo.body.model, turbo.body.steps, turbo.body.guidance_scale, turbo.body.width, turbo.body.height],
      [TURBO, 4, 0, 128, 128],
      "the turbo model's own defaults",
    );
    ids.push({ id: String(turbo.body.id), model: TURBO });
  }
  for (const { id, model } of ids) {
    const worker = model === TURBO ? turboWorker : demoWorker;
    const done = await succeededOn(worker, id);
    assert.equal(done.status, 'succeeded');
    const row = await findGeneration(stack.database.db, id);
    assert.equal(
      row?.worker_id,
      model === TURBO ? 'turbo-1' : 'demo-1',
      `${id} (${model}) ran on its model's worker`,
    );
  }
  // A worker never fetched the other model's job: each logged starts only for its own.
  for (const [worker, model] of [
    [demoWorker, DEMO_MODEL_ID],
    [turboWorker, TURBO],
  ] as const) {
    const started = worker
      .recent()
      .filter((line) => line.includes(`"${GENERATION_STARTED}"`))
      .map((line) => (JSON.parse(line) as { generation_id: string }).generation_id);
    const expected = ids.filter((g) => g.model === model).map((g) => g.id);
    assert.deepEqual(
      started.filter((id) => !expected.includes(id)),
      [],
      `${model}'s worker ran only ${model} jobs`,
    );
  }
});

test("the API refuses a model it does not know and values outside the chosen model's capabilities", async () => {
  const unknown = await create({ model: 'sdxl', prompt: 'x' });
  assert.equal(unknown.status, 422);
  assert.equal(unknown.body.code, 'model_not_found');
  assert.match(String(unknown.body.detail), /'sdxl'.*Available: .*demo.*turbo/);

  const outside = await create({ model: TURBO, prompt: 'x', steps: 25, scheduler: 'ddim', width: 96 });
  assert.equal(outside.status, 422);
  assert.equal(outside.body.code, 'unsupported_by_model');
  const errors = outside.body.errors as { field: string; message: string }[];
  assert.deepEqual(errors.map((e) => e.field).sort(), ['scheduler', 'steps', 'width']);
  for (const e of errors) assert.match(e.message, /model 'turbo'/, 'each error names the model');

  const negative = await create({ model: TURBO, prompt: 'x', negative_prompt: 'blurry' });
  assert.equal(negative.status, 422);
  assert.deepEqual(
    (negative.body.errors as { field: string }[]).map((e) => e.field),
    ['negative_prompt'],
  );
  const tooMany = await create({ model: TURBO, prompt: 'x', num_images: 3 });
  assert.equal(tooMany.status, 422);

  // The same values are fine on the model that has them.
  const fine = await create({
    prompt: 'x',
    steps: 25,
    scheduler: 'ddim',
    width: 96,
    height: 64,
    negative_prompt: 'b',
  });
  assert.equal(fine.status, 202, JSON.stringify(fine.body));
  await succeededOn(demoWorker, String(fine.body.id));
});

test('a Russian prompt is translated for a model that reads only English, not for one that reads Russian', {
  timeout: 60_000,
}, async () => {
  const prompt = 'кот в сапогах';
  const onDemo = await create({ prompt, width: 64, height: 64, steps: 1 });
  const onTurbo = await create({ model: TURBO, prompt, width: 64, height: 64, steps: 1 });
  const demo = await succeededOn(demoWorker, String(onDemo.body.id));
  const turbo = await succeededOn(turboWorker, String(onTurbo.body.id));
  assert.equal(demo.translated, true);
  assert.notEqual(demo.prompt_en, prompt);
  assert.equal(turbo.translated, false);
  assert.equal(turbo.prompt_en, prompt, 'the turbo model reads it as written');
});

test('a model with no live worker takes generations; they wait, then run when its worker starts', {
  timeout: 60_000,
}, async () => {
  const laterDir = await writeModel('later-export', { id: 'later' });
  // Registered by an operator ahead of its workers (easel models register --dir).
  const card = await readModelCard(laterDir);
  await registerModel(stack.database.db, {
    id: card.id,
    family: card.family.name,
    capabilities: card.capabilities,
  });
  const waiting = await create({ model: 'later', prompt: 'patience', width: 64, height: 64, steps: 1 });
  assert.equal(waiting.status, 202, JSON.stringify(waiting.body));
  const id = String(waiting.body.id);
  const queued = await read(id);
  assert.deepEqual(
    [queued.status, queued.queue_position, queued.live_workers, queued.eta],
    ['queued', 0, 0, null],
    'queued first in its own queue, no worker, so no ETA',
  );
  // The other models' workers are idle and awake, yet none of them takes it.
  const busy = await create({ prompt: 'meanwhile', width: 64, height: 64, steps: 1 });
  await succeededOn(demoWorker, String(busy.body.id));
  assert.equal((await read(id)).status, 'queued');

  const laterWorker = await stack.startWorker({ ...WORKER_ENV, WORKER_ID: 'later-1', MODEL_DIR: laterDir });
  const done = await succeededOn(laterWorker, id);
  assert.equal(done.status, 'succeeded');
});

test("SIGKILL of one model's worker leaves the other model's generations untouched", {
  timeout: 90_000,
}, async () => {
  const turboIds: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await create({
      model: TURBO,
      prompt: `turbo crash ${i}`,
      width: 1024,
      height: 1024,
      steps: 8,
    });
    turboIds.push(String(res.body.id));
  }
  await turboWorker.waitForLog(GENERATION_STARTED, (line) => turboIds.includes(String(line.generation_id)));
  await turboWorker.stop('SIGKILL');

  const demoIds: string[] = [];
  for (let i = 0; i < 4; i++) {
    const res = await create({ prompt: `demo during crash ${i}`, width: 64, height: 64, steps: 2 });
    demoIds.push(String(res.body.id));
  }
  for (const id of demoIds) {
    const done = await succeededOn(demoWorker, id);
    assert.equal(done.attempts, 1, 'no demo generation was disturbed');
  }
  // Those the killed worker had not finished wait for another turbo worker.
  const waiting: string[] = [];
  for (const id of turboIds) {
    const row = await read(id);
    if (row.status === 'succeeded') continue;
    assert.ok(['queued', 'running'].includes(row.status), `${id} waits for a turbo worker (${row.status})`);
    waiting.push(id);
  }
  assert.ok(waiting.length >= 1, 'the kill left turbo work unfinished');

  turboWorker = await stack.startWorker({ ...WORKER_ENV, WORKER_ID: 'turbo-2', MODEL_DIR: turboDir });
  for (const id of waiting) {
    const done = await succeededOn(turboWorker, id);
    assert.equal(done.status, 'succeeded', `${id} succeeded once a turbo worker was back`);
  }
});
