// End to end on the real stack: API and worker as separate processes, real Postgres, pg-boss,
// the S3 server process, the demo model through ONNX Runtime, real HTTP.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import type { ProblemDocument } from '../api/errors.ts';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import { GENERATION_SUCCEEDED } from '../shared/log-events.ts';
import { type Stack, startStack } from './harness/stack.ts';

let stack: Stack;

before(async () => {
  stack = await startStack('e2e');
  await stack.startApi();
});

after(async () => {
  await stack?.stop();
});

async function create(body: Record<string, unknown>): Promise<GenerationResource> {
  const res = await stack.request('/v1/generations', { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 202, await res.clone().text());
  return (await res.json()) as GenerationResource;
}

async function get(id: string): Promise<GenerationResource> {
  const res = await stack.request(`/v1/generations/${id}`);
  assert.equal(res.status, 200);
  return (await res.json()) as GenerationResource;
}

/** Resolves when the worker logs that this generation ended (an event, not a poll). */
function finished(id: string) {
  const worker = stack.workers[0];
  assert.ok(worker, 'worker not started');
  return worker.waitForLog(GENERATION_SUCCEEDED, (line) => line.generation_id === id);
}

test('a generation accepted while no worker runs is completed once a worker starts', async () => {
  const accepted = await create({ prompt: 'accepted before any worker', width: 64, height: 64, steps: 3 });
  assert.equal(accepted.status, 'queued');
  // Nothing consumes the queue yet: the job waits in Postgres, not in anyone's memory.
  assert.equal((await get(accepted.id)).status, 'queued');

  const worker = await stack.startWorker();
  await worker.waitForLog(GENERATION_SUCCEEDED, (line) => line.generation_id === accepted.id);
  const done = await get(accepted.id);
  assert.equal(done.status, 'succeeded');
  assert.equal(done.outputs.length, 1);
});

test('submit over HTTP, complete on the worker, download a JPEG of the requested size', async () => {
  const accepted = await create({
    prompt: 'a lighthouse at dusk, oil painting',
    negative_prompt: 'blurry',
    width: 320,
    height: 192,
    steps: 4,
    guidance_scale: 7,
    seed: 1234,
    num_images: 2,
  });
  assert.equal(accepted.seed, 1234);
  await finished(accepted.id);

  const done = await get(accepted.id);
  assert.equal(done.status, 'succeeded');
  assert.equal(done.outputs.length, 2);
  for (const output of done.outputs) {
    const res = await fetch(output.url);
    assert.equal(res.status, 200);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(bytes.byteLength, output.bytes);
    const meta = await sharp(bytes).metadata();
    assert.equal(meta.format, 'jpeg');
    assert.equal(meta.width, 320);
    assert.equal(meta.height, 192);
    assert.equal(output.content_type, 'image/jpeg');
  }
  assert.notEqual(done.outputs[0]?.sha256, done.outputs[1]?.sha256, 'two images of a batch should differ');
});

test('a Russian prompt is translated before tokenization; the resource reports both prompts', async () => {
  const accepted = await create({ prompt: 'красный кот на крыше', width: 64, height: 64, steps: 2 });
  await finished(accepted.id);
  const done = await get(accepted.id);
  assert.equal(done.prompt, 'красный кот на крыше');
  assert.ok(done.prompt_en && done.prompt_en.length > 0, 'prompt_en is reported');
  assert.doesNotMatch(done.prompt_en, /[\u0400-\u04FF]/, 'the encoder saw no Cyrillic');

  const latin = await create({ prompt: 'a red cat on a roof', width: 64, height: 64, steps: 2 });
  await finished(latin.id);
  const passed = await get(latin.id);
  assert.equal(passed.prompt_en, 'a red cat on a roof', 'English prompts pass through untouched');
});

test('the request may name a sampler; the resource reports what ran', async () => {
  const accepted = await create({
    prompt: 'a fox',
    width: 64,
    height: 64,
    steps: 4,
    scheduler: 'dpmpp_2m',
    karras: true,
  });
  await finished(accepted.id);
  const done = await get(accepted.id);
  assert.equal(done.requested_scheduler, 'dpmpp_2m');
  assert.equal(done.scheduler, 'dpmpp_2m_karras');

  const refused = await stack.request('/v1/generations', {
    method: 'POST',
    body: JSON.stringify({ prompt: 'a fox', scheduler: 'ddim', karras: true }),
  });
  assert.equal(refused.status, 422);
  const problem = (await refused.json()) as ProblemDocument;
  assert.deepEqual(
    problem.errors?.map((e) => e.field),
    ['karras'],
  );
});

test('20 generations on one worker all succeed, in submission order', async (t) => {
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    ids.push((await create({ prompt: `backlog item ${i}`, width: 64, height: 64, steps: 2, seed: i })).id);
  }
  const lastId = ids.at(-1);
  assert.ok(lastId);
  await finished(lastId);

  const rows = await Promise.all(ids.map(get));
  for (const row of rows) assert.equal(row.status, 'succeeded', `generation ${row.id}`);
  const starts = rows.map((r) => Date.parse(r.started_at ?? ''));
  for (let i = 1; i < starts.length; i++) {
    assert.ok((starts[i] ?? 0) >= (starts[i - 1] ?? 0), `generation ${i} started before generation ${i - 1}`);
  }
  let largestGap = 0;
  for (let i = 1; i < rows.length; i++) {
    const gap = Date.parse(rows[i]?.started_at ?? '') - Date.parse(rows[i - 1]?.finished_at ?? '');
    largestGap = Math.max(largestGap, gap);
  }
  // Reported, not asserted: timing belongs in the benchmark, not in a unit test.
  t.diagnostic(`largest gap between one job's end and the next one's start: ${largestGap} ms`);
});

test('an admin key sees the running worker in GET /v1/workers, and it shows as stopped after SIGTERM', async () => {
  const { createApiKey } = await import('../db/api-keys.repository.ts');
  const admin = await createApiKey(stack.database.db, { name: 'operator', admin: true });
  const asAdmin = { headers: { authorization: `Bearer ${admin.key}` } };
  const worker = await stack.startWorker({ WORKER_ID: 'gpu-e2e-registry' });
  const listed = await stack.request('/v1/workers', asAdmin);
  assert.equal(listed.status, 200);
  const { data } = (await listed.json()) as {
    data: { id: string; provider: string; model: { family: string }; live: boolean; pid: number }[];
  };
  const entry = data.find((w) => w.id === 'gpu-e2e-registry');
  assert.ok(entry, 'the worker registered before it reported ready');
  assert.equal(entry.provider, 'cpu');
  assert.equal(entry.model.family, 'OnnxStableDiffusionPipeline');
  assert.equal(entry.live, true);
  assert.equal(entry.pid, worker.child.pid);

  // Ordinary keys do not see the fleet.
  assert.equal((await stack.request('/v1/workers')).status, 403);

  assert.equal(await worker.stop(), 0);
  const live = (await (await stack.request('/v1/workers', asAdmin)).json()) as { data: { id: string }[] };
  assert.ok(!live.data.some((w) => w.id === 'gpu-e2e-registry'), 'a stopped worker is not live');
  const all = (await (await stack.request('/v1/workers?include_stale=true', asAdmin)).json()) as {
    data: { id: string; live: boolean; stopped_at: string | null }[];
  };
  const stopped = all.data.find((w) => w.id === 'gpu-e2e-registry');
  assert.equal(stopped?.live, false);
  assert.ok(stopped?.stopped_at);
});
