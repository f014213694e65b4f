// GET /v1/models and /v1/models/{id} on the real app over HTTP: models written the way operators
// (registerModel, retireModel) and workers (announceModel, registerWorker) write them, status and
// live workers judged by WORKER_STALE_SECONDS, queue counts and run times from generations rows.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createApiKey } from '../db/api-keys.repository.ts';
import { insertGeneration } from '../db/generations.repository.ts';
import { announceModel, registerModel, retireModel } from '../db/models.repository.ts';
import type { GenerationStatus, ModelCapabilities } from '../db/types.ts';
import { markWorkerStopped, registerWorker } from '../db/workers.repository.ts';
import { DEMO_MODEL_ID } from '../test/harness/models.ts';
import type { ModelResource } from './models.schemas.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;
let user: { id: string; key: string };

const CAPABILITIES: ModelCapabilities = {
  samplers: ['euler', 'euler_a', 'ddim'],
  karras_samplers: ['euler'],
  default_sampler: 'euler_a',
  width: { min: 64, max: 1024, multiple_of: 8, default: 512 },
  height: { min: 64, max: 1024, multiple_of: 8, default: 512 },
  steps: { min: 1, max: 50, default: 25 },
  guidance_scale: { min: 0, max: 20, default: 7.5 },
  negative_prompt: true,
  languages: ['en'],
  max_images: 4,
};

// A distilled model: one sampler, few steps, no guidance, a landscape default.
const TURBO: ModelCapabilities = {
  ...CAPABILITIES,
  samplers: ['euler_a'],
  karras_samplers: [],
  width: { min: 256, max: 1024, multiple_of: 64, default: 768 },
  steps: { min: 1, max: 8, default: 4 },
  guidance_scale: { min: 0, max: 2, default: 0 },
  negative_prompt: false,
  languages: ['en', 'ru'],
  max_images: 1,
};

const TURBO_HASH = `sha256:${'ab'.repeat(32)}`;

function worker(id: string, modelId: string) {
  return registerWorker(api.t.db, {
    id,
    hostname: `box-${id}`,
    pid: 4000,
    provider: 'cpu',
    model: { dir: `/models/${modelId}` },
    modelId,
    translator: null,
  });
}

/** Generations of `model` in `status`; succeeded ones ran `runMs` each, finishing in that order. */
async function generations(model: string, status: GenerationStatus, runMs: number[] | number) {
  const runs = typeof runMs === 'number' ? Array.from({ length: runMs }, () => undefined) : runMs;
  for (const [i, ms] of runs.entries()) {
    const started = new Date(Date.now() - 3_600_000 + i * 60_000);
    await insertGeneration(api.t.db, {
      id: randomUUID(),
      api_key_id: user.id,
      status,
      model,
      prompt: `${model} ${status} ${i}`,
      negative_prompt: '',
      width: 512,
      height: 512,
      steps: 25,
      guidance_scale: 7.5,
      num_images: 1,
      seed: i,
      scheduler: null,
      requested_scheduler: null,
      requested_karras: null,
      prompt_en: null,
      negative_prompt_en: null,
      error_code: null,
      error_message: null,
      started_at: status === 'queued' ? null : started,
      finished_at: ms === undefined ? null : new Date(started.getTime() + ms),
      cancel_requested_at: null,
      progress_step: null,
      progress_total: null,
      step_ms: null,
      worker_id: null,
    });
  }
}

before(async () => {
  api = await startTestApi('api_models');
  user = await api.newKey('integrator');

  // sd15: registered by an operator; one live worker, one that stopped; a queue and a history.
  await registerModel(api.t.db, { id: 'sd15', family: 'stable-diffusion', capabilities: CAPABILITIES });
  await worker('gpu-sd15-a', 'sd15');
  await worker('gpu-sd15-b', 'sd15');
  await markWorkerStopped(api.t.db, 'gpu-sd15-b');
  await generations('sd15', 'queued', 2);
  await generations('sd15', 'running', 1);
  await generations('sd15', 'succeeded', [1000, 4000, 2000]);
  await generations('sd15', 'failed', 1);

  // turbo: announced by its worker (with a content hash), which then went silent five minutes ago.
  await announceModel(api.t.db, {
    id: 'turbo',
    family: 'stable-diffusion',
    capabilities: TURBO,
    contentHash: TURBO_HASH,
  });
  await worker('gpu-turbo', 'turbo');
  await api.t.db
    .updateTable('workers')
    .set({ last_heartbeat_at: new Date(Date.now() - 300_000) })
    .where('id', '=', 'gpu-turbo')
    .execute();
  await generations('turbo', 'queued', 3);

  // lonely: registered ahead of any worker. old: retired, though a worker still drains its queue.
  await registerModel(api.t.db, { id: 'lonely', family: 'stable-diffusion', capabilities: CAPABILITIES });
  await registerModel(api.t.db, { id: 'old', family: 'stable-diffusion', capabilities: CAPABILITIES });
  await worker('gpu-old', 'old');
  await generations('old', 'queued', 1);
  await retireModel(api.t.db, 'old');
});
after(async () => {
  await api?.close();
});

async function listModels(url: string, key: string, query = '') {
  const res = await call(`${url}/v1/models${query}`, { key });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await res.json()) as { object: string; data: ModelResource[] };
  assert.equal(body.object, 'list');
  return body.data;
}

async function getModel(id: string, key = user.key) {
  const res = await call(`${api.url}/v1/models/${id}`, { key });
  assert.equal(res.status, 200);
  return (await res.json()) as ModelResource;
}

test('any key lists the models in service, by id, with capabilities, defaults, status and load', async () => {
  const data = await listModels(api.url, user.key);
  // The harness registers the demo model too, as an operator would (no worker holds it here).
  assert.equal(data.find((m) => m.id === DEMO_MODEL_ID)?.status, 'no_workers');
  assert.deepEqual(
    data.map((m) => m.id),
    [DEMO_MODEL_ID, 'lonely', 'sd15', 'turbo'].sort(),
  );
  const row = await api.t.db
    .selectFrom('models')
    .selectAll()
    .where('id', '=', 'sd15')
    .executeTakeFirstOrThrow();
  assert.deepEqual(
    data.find((m) => m.id === 'sd15'),
    {
      object: 'model',
      id: 'sd15',
      family: 'stable-diffusion',
      capabilities: CAPABILITIES,
      defaults: { width: 512, height: 512, steps: 25, guidance_scale: 7.5, scheduler: 'euler_a' },
      status: 'available',
      // The stopped worker does not count.
      live_workers: 1,
      queued: 2,
      running: 1,
      // The failed generation has no run time; the median of 1000, 4000 and 2000 ms is 2000.
      median_run_ms: 2000,
      content_hash: null,
      announced_at: null,
      retired_at: null,
      created_at: row.created_at.toISOString(),
    },
  );
});

test('an admin key sees the same list', async () => {
  const { key } = await createApiKey(api.t.db, { name: 'operator', admin: true });
  assert.deepEqual(await listModels(api.url, key), await listModels(api.url, user.key));
});

test('a model whose only worker went silent has no_workers; one registered ahead of workers too', async () => {
  const turbo = await getModel('turbo');
  assert.equal(turbo.status, 'no_workers');
  assert.equal(turbo.live_workers, 0);
  assert.equal(turbo.queued, 3);
  assert.equal(turbo.running, 0);
  assert.equal(turbo.median_run_ms, null);
  assert.equal(turbo.content_hash, TURBO_HASH);
  assert.match(turbo.announced_at ?? '', /^\d{4}-\d\d-\d\dT[\d:.]+Z$/);
  assert.deepEqual(turbo.capabilities, TURBO);
  assert.deepEqual(turbo.defaults, {
    width: 768,
    height: 512,
    steps: 4,
    guidance_scale: 0,
    scheduler: 'euler_a',
  });

  const lonely = await getModel('lonely');
  assert.equal(lonely.status, 'no_workers');
  assert.deepEqual(
    [lonely.live_workers, lonely.queued, lonely.running, lonely.median_run_ms],
    [0, 0, 0, null],
  );
  assert.equal(lonely.announced_at, null);
});

test('WORKER_STALE_SECONDS decides which workers are live', async () => {
  // Ten minutes of grace: the worker silent for five counts again; a stopped one never does.
  const lenient = await api.serveVariant({ config: { ...api.config, WORKER_STALE_SECONDS: 600 } });
  const byId = new Map((await listModels(lenient.url, user.key)).map((m) => [m.id, m]));
  assert.equal(byId.get('turbo')?.status, 'available');
  assert.equal(byId.get('turbo')?.live_workers, 1);
  assert.equal(byId.get('sd15')?.live_workers, 1);
  assert.equal(api.config.WORKER_STALE_SECONDS, 30, 'the default');
});

test('include_retired=true adds retired models, marked retired even with a live worker', async () => {
  const data = await listModels(api.url, user.key, '?include_retired=true');
  assert.deepEqual(
    data.map((m) => m.id),
    [DEMO_MODEL_ID, 'lonely', 'old', 'sd15', 'turbo'].sort(),
  );
  const old = data.find((m) => m.id === 'old');
  assert.equal(old?.status, 'retired');
  assert.equal(old?.live_workers, 1);
  assert.equal(old?.queued, 1, 'its queued generations still run');
  assert.match(old?.retired_at ?? '', /^\d{4}-\d\d-\d\dT[\d:.]+Z$/);

  assert.deepEqual(
    (await listModels(api.url, user.key, '?include_retired=false')).map((m) => m.id),
    [DEMO_MODEL_ID, 'lonely', 'sd15', 'turbo'].sort(),
  );
  // By id a retired model is found, retired.
  assert.deepEqual(await getModel('old'), old);
});

test('a worker starting with a model makes it available; registering a retired model returns it to service', async () => {
  await worker('gpu-lonely', 'lonely');
  const lonely = await getModel('lonely');
  assert.equal(lonely.status, 'available');
  assert.equal(lonely.live_workers, 1);

  await registerModel(api.t.db, { id: 'old', family: 'stable-diffusion', capabilities: CAPABILITIES });
  const old = await getModel('old');
  assert.equal(old.status, 'available');
  assert.equal(old.retired_at, null);
  await retireModel(api.t.db, 'old');
  assert.equal((await getModel('old')).status, 'retired');
});

test('an unknown or impossible id is 404 not_found', async () => {
  for (const id of ['nothere', 'Not%20A%20Model', 'x'.repeat(65), randomUUID()]) {
    const res = await call(`${api.url}/v1/models/${id}`, {
      key: user.key,
      headers: { 'X-Request-Id': 'missing-model' },
    });
    assert.equal(res.status, 404, id);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.deepEqual(await res.json(), {
      type: 'urn:easel:problem:not_found',
      title: 'Resource not found',
      status: 404,
      detail: 'No model with this id.',
      code: 'not_found',
      instance: decodeURIComponent(`/v1/models/${id}`),
      request_id: 'missing-model',
    });
  }
});

test('no key or a revoked one gets 401', async () => {
  for (const path of ['/v1/models', '/v1/models/sd15']) {
    const anonymous = await call(`${api.url}${path}`);
    assert.equal(anonymous.status, 401);
    assert.equal(((await anonymous.json()) as { code: string }).code, 'unauthorized');
  }
  const { apiKey, key } = await createApiKey(api.t.db, { name: 'former integrator' });
  assert.equal((await call(`${api.url}/v1/models`, { key })).status, 200);
  await api.t.db
    .updateTable('api_keys')
    .set({ revoked_at: new Date() })
    .where('id', '=', apiKey.id)
    .execute();
  assert.equal((await call(`${api.url}/v1/models`, { key })).status, 401);
});

test('a bad include_retired is 422 validation_failed naming it', async () => {
  const res = await call(`${api.url}/v1/models?include_retired=yes`, { key: user.key });
  assert.equal(res.status, 422);
  const problem = (await res.json()) as { code: string; errors: { field: string; message: string }[] };
  assert.equal(problem.code, 'validation_failed');
  assert.deepEqual(problem.errors, [{ field: 'include_retired', message: 'must be true or false' }]);
});

test('GET /v1/models and /v1/models/{id} are documented under Models', async () => {
  const doc = (await (await fetch(`${api.url}/openapi.json`)).json()) as {
    paths: Record<string, Record<string, { tags: string[]; responses: Record<string, unknown> }>>;
    tags: { name: string }[];
    components: { schemas: Record<string, unknown> };
  };
  const list = doc.paths['/v1/models']?.get;
  const item = doc.paths['/v1/models/{id}']?.get;
  assert.deepEqual(list?.tags, ['Models']);
  assert.deepEqual(item?.tags, ['Models']);
  assert.deepEqual(Object.keys(list?.responses ?? {}).sort(), ['200', '401', '422', '500', '503']);
  assert.deepEqual(Object.keys(item?.responses ?? {}).sort(), ['200', '401', '404', '500', '503']);
  assert.ok(doc.tags.some((t) => t.name === 'Models'));
  for (const name of ['Model', 'ModelList', 'ModelCapabilities'])
    assert.ok(doc.components.schemas[name], name);
});
