// Kandinsky 2.1 through the HTTP API, beside a Stable Diffusion worker: the demo Kandinsky export
// (tiny random weights, the real layout and signatures) on its own worker, requests routed by
// `model`, a Russian prompt read natively (no translation), a negative prompt, a batch of two,
// determinism by seed, and a cancel that stops the run between steps.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ServiceProcess } from '../bin/local/service-process.ts';
import { findGeneration } from '../db/generations.repository.ts';
import { writeDemoKandinskyModel } from '../gpu-worker/models/demo/kandinsky-model.ts';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import { GENERATION_CANCELED, GENERATION_STARTED, GENERATION_SUCCEEDED } from '../shared/log-events.ts';
import { DEMO_MODEL_ID } from './harness/models.ts';
import { type Stack, startStack } from './harness/stack.ts';

const KANDINSKY = 'kandinsky-2-1';
const WORKER_ENV = { WARMUP_SIZE: '64', QUEUE_POLL_SECONDS: '3600' };

let stack: Stack;
let sdWorker: ServiceProcess;
let kandinskyWorker: ServiceProcess;

before(async () => {
  stack = await startStack('kandinsky');
  await stack.startApi({ DEFAULT_MODEL: DEMO_MODEL_ID, MODEL_CACHE_SECONDS: '0' });
  const dir = join(stack.dataDir, 'models', 'kandinsky-2-1-demo');
  await writeDemoKandinskyModel(dir, { version: '2.1' });
  [sdWorker, kandinskyWorker] = await Promise.all([
    stack.startWorker({ ...WORKER_ENV, WORKER_ID: 'sd-1' }),
    stack.startWorker({ ...WORKER_ENV, WORKER_ID: 'kandinsky-1', MODEL_DIR: dir, MODEL_ID: KANDINSKY }),
  ]);
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

async function finished(
  worker: ServiceProcess,
  id: string,
  msg = GENERATION_SUCCEEDED,
): Promise<GenerationResource> {
  await worker.waitForLog(msg, (line) => line.generation_id === id, { past: true });
  return (await (await stack.request(`/v1/generations/${id}`)).json()) as GenerationResource;
}

test("the API takes Kandinsky's defaults and limits from its model", async () => {
  const models = (await (await stack.request(`/v1/models/${KANDINSKY}`)).json()) as {
    family: string;
    defaults: Record<string, unknown>;
    capabilities: { languages: string[] };
  };
  assert.equal(models.family, 'kandinsky');
  assert.deepEqual(models.defaults, {
    width: 512,
    height: 512,
    steps: 100,
    guidance_scale: 4,
    scheduler: 'ddim',
  });
  assert.deepEqual(models.capabilities.languages, ['en', 'ru']);

  const refused = await create({
    model: KANDINSKY,
    prompt: 'x',
    width: 96,
    scheduler: 'euler',
    karras: true,
  });
  assert.equal(refused.status, 422);
  assert.equal(refused.body.code, 'unsupported_by_model');
  assert.deepEqual((refused.body.errors as { field: string }[]).map((e) => e.field).sort(), [
    'karras',
    'scheduler',
    'width',
  ]);
});

test('a Russian prompt with a negative prompt, two images: read natively, run on the Kandinsky worker', {
  timeout: 60_000,
}, async () => {
  const prompt = 'рыжий кот в сапогах, масло';
  const created = await create({
    model: KANDINSKY,
    prompt,
    negative_prompt: 'размыто',
    width: 128,
    height: 64,
    steps: 6,
    num_images: 2,
    seed: 11,
  });
  assert.equal(created.status, 202, JSON.stringify(created.body));
  const id = String(created.body.id);
  const done = await finished(kandinskyWorker, id);
  assert.equal(done.status, 'succeeded');
  assert.equal(done.translated, false, 'the multilingual encoder reads Russian as written');
  assert.equal(done.prompt_en, prompt);
  assert.equal(done.scheduler, 'ddim');
  assert.deepEqual(
    done.outputs.map((o) => [o.index, o.width, o.height, o.content_type]),
    [
      [0, 128, 64, 'image/jpeg'],
      [1, 128, 64, 'image/jpeg'],
    ],
  );
  assert.notEqual(done.outputs[0]?.sha256, done.outputs[1]?.sha256, 'two images from two seeds');
  const image = await fetch(String(done.outputs[0]?.url));
  assert.equal(image.status, 200);
  assert.equal((await findGeneration(stack.database.db, id))?.worker_id, 'kandinsky-1');
});

test('the same seed gives the same bytes; image 1 of a batch is the single run at seed + 1', {
  timeout: 60_000,
}, async () => {
  const body = { model: KANDINSKY, prompt: 'a lighthouse at dawn', width: 64, height: 64, steps: 5 };
  const batch = await create({ ...body, seed: 40, num_images: 2 });
  const again = await create({ ...body, seed: 40, num_images: 2 });
  const single = await create({ ...body, seed: 41 });
  const [a, b, c] = await Promise.all(
    [batch, again, single].map((r) => finished(kandinskyWorker, String(r.body.id))),
  );
  const hashes = (g: GenerationResource | undefined) => g?.outputs.map((o) => o.sha256);
  assert.deepEqual(hashes(a), hashes(b), 'same seed, same bytes');
  assert.equal(hashes(c)?.[0], hashes(a)?.[1], 'image i of a batch is the run at seed + i');
  assert.notEqual(hashes(a)?.[0], hashes(a)?.[1]);
});

test('SD and Kandinsky generations created together each run on their own worker', {
  timeout: 60_000,
}, async () => {
  const sd = await create({ prompt: 'a red fox', width: 64, height: 64, steps: 2 });
  const kd = await create({ model: KANDINSKY, prompt: 'a red fox', width: 64, height: 64, steps: 2 });
  const [sdDone, kdDone] = await Promise.all([
    finished(sdWorker, String(sd.body.id)),
    finished(kandinskyWorker, String(kd.body.id)),
  ]);
  assert.deepEqual([sdDone.model, sdDone.scheduler], [DEMO_MODEL_ID, 'euler']);
  assert.deepEqual([kdDone.model, kdDone.scheduler], [KANDINSKY, 'ddim']);
  assert.equal((await findGeneration(stack.database.db, String(sd.body.id)))?.worker_id, 'sd-1');
  assert.equal((await findGeneration(stack.database.db, String(kd.body.id)))?.worker_id, 'kandinsky-1');
});

test('a cancel stops a Kandinsky run between decoder steps', { timeout: 60_000 }, async () => {
  const created = await create({
    model: KANDINSKY,
    prompt: 'a long one',
    width: 1024,
    height: 1024,
    steps: 150,
  });
  const id = String(created.body.id);
  await kandinskyWorker.waitForLog(GENERATION_STARTED, (line) => line.generation_id === id, { past: true });
  const res = await stack.request(`/v1/generations/${id}/cancel`, {
    method: 'POST',
    headers: { prefer: 'wait=30' },
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as GenerationResource;
  assert.equal(body.status, 'canceled');
  assert.ok((body.progress?.step ?? 0) < 150, `stopped at step ${body.progress?.step} of 150`);
  await finished(kandinskyWorker, id, GENERATION_CANCELED);
});
