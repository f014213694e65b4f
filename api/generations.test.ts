import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { REQUEST } from '../shared/log-events.ts';
import { outputKey } from '../shared/object-store.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;
let alice: { id: string; key: string };
let bob: { id: string; key: string };

before(async () => {
  api = await startTestApi('api_generations');
  alice = await api.newKey('alice');
  bob = await api.newKey('bob');
});
after(async () => {
  await api?.close();
});

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function create(key: string, json: unknown) {
  const res = await call(`${api.url}/v1/generations`, { key, json });
  return { res, body: (await res.json()) as Record<string, unknown> };
}

async function jobFor(id: string) {
  const { rows } = await sql<{ id: string; name: string; state: string; data: unknown }>`
    select id, name, state, data from pgboss.job where id = ${id}`.execute(api.t.db);
  return rows[0];
}

test('POST /v1/generations queues a generation: 202, Location, defaults, chosen seed, row and job', async () => {
  const { res, body } = await create(alice.key, { prompt: '  a red fox in snow  ' });
  assert.equal(res.status, 202);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const id = body.id as string;
  assert.match(id, UUID);
  assert.equal(res.headers.get('location'), `/v1/generations/${id}`);
  assert.deepEqual(
    {
      ...body,
      id: undefined,
      seed: undefined,
      created_at: undefined,
      queue_position: undefined,
    },
    {
      id: undefined,
      object: 'generation',
      status: 'queued',
      model: 'demo',
      prompt: 'a red fox in snow',
      negative_prompt: '',
      prompt_en: null,
      translated: null,
      negative_prompt_en: null,
      width: 512,
      height: 512,
      steps: 25,
      guidance_scale: 7.5,
      seed: undefined,
      num_images: 1,
      scheduler: null,
      requested_scheduler: null,
      karras: null,
      queue_position: undefined,
      live_workers: 0,
      progress: null,
      eta: null,
      cancel_requested: false,
      outputs: [],
      error: null,
      attempts: 0,
      prompt_truncated: false,
      timings: {},
      created_at: undefined,
      started_at: null,
      finished_at: null,
    },
  );
  assert.equal(typeof body.queue_position, 'number');
  assert.ok(
    Number.isInteger(body.seed) && (body.seed as number) >= 0 && (body.seed as number) <= 2 ** 32 - 1,
  );
  assert.ok(Math.abs(Date.parse(body.created_at as string) - Date.now()) < 60_000);

  const row = await api.t.db.selectFrom('generations').selectAll().where('id', '=', id).executeTakeFirst();
  assert.ok(row, 'the generations row exists');
  assert.equal(row.api_key_id, alice.id);
  assert.equal(row.seed, body.seed);
  assert.equal(row.status, 'queued');

  const job = await jobFor(id);
  assert.ok(job, 'a pg-boss job with the generation id exists');
  assert.equal(job.name, 'generations/demo', "the default model's queue");
  assert.equal(job.state, 'created');
  assert.deepEqual(job.data, { v: 1, generation_id: id });
});

test('POST echoes every given parameter, including seed 0 and the largest seed', async () => {
  for (const seed of [0, 4_294_967_295]) {
    const json = {
      prompt: 'a lighthouse',
      negative_prompt: 'blurry',
      width: 768,
      height: 640,
      steps: 30,
      guidance_scale: 0,
      seed,
      num_images: 4,
    };
    const { res, body } = await create(alice.key, json);
    assert.equal(res.status, 202);
    assert.deepEqual(
      {
        prompt: body.prompt,
        negative_prompt: body.negative_prompt,
        width: body.width,
        height: body.height,
        steps: body.steps,
        guidance_scale: body.guidance_scale,
        seed: body.seed,
        num_images: body.num_images,
      },
      json,
    );
  }
});

test('GET /v1/generations/{id} reports queue position, which moves as the queue drains', async () => {
  // Only these two are queued in this database from here on (rows and their jobs, as a cancel does).
  await api.t.db
    .updateTable('generations')
    .set({ status: 'canceled' })
    .where('status', '=', 'queued')
    .execute();
  await sql`update pgboss.job set state = 'cancelled' where state < 'active'`.execute(api.t.db);
  const first = await create(alice.key, { prompt: 'first' });
  const second = await create(bob.key, { prompt: 'second' });
  assert.equal(first.body.queue_position, 0);
  assert.equal(second.body.queue_position, 1);

  const get = async (id: unknown, key: string) => {
    const res = await call(`${api.url}/v1/generations/${id}`, { key });
    assert.equal(res.status, 200);
    return (await res.json()) as Record<string, unknown>;
  };
  assert.equal((await get(first.body.id, alice.key)).queue_position, 0);
  const secondNow = await get(second.body.id, bob.key);
  assert.equal(secondNow.queue_position, 1);
  assert.deepEqual({ ...secondNow, queue_position: 0 }, { ...second.body, queue_position: 0 });

  await api.t.db
    .updateTable('generations')
    .set({ status: 'running', started_at: new Date(), attempts: 1 })
    .where('id', '=', first.body.id as string)
    .execute();
  // As a worker's fetch does: the job is taken off the waiting list.
  await sql`update pgboss.job set state = 'active', started_on = now() where id = ${first.body.id as string}`.execute(
    api.t.db,
  );
  const running = await get(first.body.id, alice.key);
  assert.equal(running.status, 'running');
  assert.equal(running.queue_position, null);
  assert.equal(running.attempts, 1);
  assert.equal(typeof running.started_at, 'string');
  assert.equal((await get(second.body.id, bob.key)).queue_position, 0);
});

test("another key's generation, an unknown id and a non-uuid id are all 404 not_found", async () => {
  const { body } = await create(alice.key, { prompt: 'private' });
  for (const [path, key] of [
    [`/v1/generations/${body.id}`, bob.key],
    [`/v1/generations/${randomUUID()}`, alice.key],
    ['/v1/generations/not-a-uuid', alice.key],
    ['/v1/generations/123', alice.key],
  ] as const) {
    const res = await call(`${api.url}${path}`, { key });
    assert.equal(res.status, 404, path);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as Record<string, unknown>;
    assert.equal(problem.code, 'not_found');
    assert.equal(problem.status, 404);
    assert.equal(problem.instance, path);
  }
});

test('requests without a valid key get 401 problem+json with WWW-Authenticate: Bearer', async () => {
  const revoked = await api.newKey('revoked');
  await api.t.db
    .updateTable('api_keys')
    .set({ revoked_at: new Date() })
    .where('id', '=', revoked.id)
    .execute();
  const { body } = await create(alice.key, { prompt: 'mine' });

  const cases: Array<[string, Record<string, string>]> = [
    ['no header', {}],
    ['unknown key', { Authorization: 'Bearer esl_not-a-real-key' }],
    ['revoked key', { Authorization: `Bearer ${revoked.key}` }],
    ['wrong scheme', { Authorization: `Basic ${alice.key}` }],
    ['empty bearer', { Authorization: 'Bearer ' }],
  ];
  for (const [name, headers] of cases) {
    for (const [method, path] of [
      ['POST', '/v1/generations'],
      ['GET', `/v1/generations/${body.id}`],
    ]) {
      const res = await fetch(`${api.url}${path}`, {
        method,
        headers: { ...headers, ...(method === 'POST' ? { 'Content-Type': 'application/json' } : {}) },
        body: method === 'POST' ? JSON.stringify({ prompt: 'x' }) : undefined,
      });
      assert.equal(res.status, 401, `${name} ${method}`);
      assert.equal(res.headers.get('content-type'), 'application/problem+json');
      assert.equal(res.headers.get('www-authenticate'), 'Bearer');
      const problem = (await res.json()) as Record<string, unknown>;
      assert.equal(problem.code, 'unauthorized');
      assert.equal(problem.type, 'urn:easel:problem:unauthorized');
      assert.equal(problem.status, 401);
      assert.equal(typeof problem.detail, 'string');
      assert.equal(typeof problem.request_id, 'string');
    }
  }
  const rows = await api.t.db
    .selectFrom('generations')
    .select('id')
    .where('api_key_id', '=', revoked.id)
    .execute();
  assert.equal(rows.length, 0);
});

test('a succeeded generation lists its outputs with fresh presigned URLs that download the bytes', async () => {
  const { body } = await create(alice.key, { prompt: 'two images', num_images: 2, width: 256, height: 128 });
  const id = body.id as string;
  const images = [Buffer.from('first fake jpeg bytes'), Buffer.from('second, longer, fake jpeg bytes')];
  const outputs = [];
  for (const [index, image] of images.entries()) {
    const key = outputKey(id, index);
    const put = await api.store.put(key, image, 'image/jpeg');
    outputs.push({ index, key, width: 256, height: 128, content_type: 'image/jpeg', ...put });
  }
  await api.t.db
    .updateTable('generations')
    .set({
      status: 'succeeded',
      scheduler: 'ddim',
      attempts: 1,
      outputs: JSON.stringify([...outputs].reverse()),
      timings: JSON.stringify({ encode_ms: 3, denoise_ms: 120.5, decode_ms: 9 }),
      started_at: new Date(Date.now() - 1000),
      finished_at: new Date(),
    })
    .where('id', '=', id)
    .execute();

  const before = Date.now();
  const res = await call(`${api.url}/v1/generations/${id}`, { key: alice.key });
  assert.equal(res.status, 200);
  const generation = (await res.json()) as {
    status: string;
    queue_position: null;
    scheduler: string;
    timings: Record<string, number>;
    finished_at: string;
    outputs: Array<Record<string, unknown> & { url: string; expires_at: string }>;
  };
  assert.equal(generation.status, 'succeeded');
  assert.equal(generation.queue_position, null);
  assert.equal(generation.scheduler, 'ddim');
  const { queued_ms, run_ms, ...stages } = generation.timings;
  assert.deepEqual(stages, { encode_ms: 3, denoise_ms: 120.5, decode_ms: 9 });
  assert.equal(typeof queued_ms, 'number', 'queued_ms: created → started');
  assert.ok(run_ms !== undefined && run_ms >= 900, `run_ms: started → finished, got ${run_ms}`);
  assert.equal(typeof generation.finished_at, 'string');
  assert.deepEqual(
    generation.outputs.map((o) => o.index),
    [0, 1],
  );

  for (const [index, image] of images.entries()) {
    const output = generation.outputs[index];
    assert.ok(output);
    assert.deepEqual(
      { ...output, url: undefined, expires_at: undefined },
      {
        index,
        url: undefined,
        expires_at: undefined,
        width: 256,
        height: 128,
        content_type: 'image/jpeg',
        bytes: image.byteLength,
        sha256: createHash('sha256').update(image).digest('hex'),
      },
    );
    const expiresIn = Date.parse(output.expires_at) - before;
    const ttl = api.config.RESULT_URL_TTL_SECONDS * 1000;
    assert.ok(expiresIn >= ttl - 1000 && expiresIn <= ttl + 60_000, `expires_at ${output.expires_at}`);
    assert.ok(output.url.startsWith(api.s3.endpoint), output.url);
    assert.match(output.url, /X-Amz-Signature=/);
    const download = await fetch(output.url);
    assert.equal(download.status, 200);
    assert.deepEqual(Buffer.from(await download.arrayBuffer()), image);
  }
});

test('a failed generation exposes its error', async () => {
  const { body } = await create(alice.key, { prompt: 'doomed' });
  await api.t.db
    .updateTable('generations')
    .set({ status: 'failed', error_code: 'model_missing', error_message: 'no unet', finished_at: new Date() })
    .where('id', '=', body.id as string)
    .execute();
  const res = await call(`${api.url}/v1/generations/${body.id}`, { key: alice.key });
  const generation = (await res.json()) as Record<string, unknown>;
  assert.equal(generation.status, 'failed');
  assert.deepEqual(generation.error, { code: 'model_missing', message: 'no unet' });
  assert.deepEqual(generation.outputs, []);
});

test('every request gets an X-Request-Id (echoed when given) and one JSON access log line', async () => {
  const res = await call(`${api.url}/v1/generations/${randomUUID()}`, {
    key: alice.key,
    headers: { 'X-Request-Id': 'trace-abc-123' },
  });
  assert.equal(res.headers.get('x-request-id'), 'trace-abc-123');
  const problem = (await res.json()) as Record<string, unknown>;
  assert.equal(problem.request_id, 'trace-abc-123');
  const access = api.logs.filter((l) => l.msg === REQUEST && l.request_id === 'trace-abc-123');
  assert.equal(access.length, 1);
  assert.equal(access[0]?.status, 404);
  assert.equal(access[0]?.method, 'GET');

  const generated = await fetch(`${api.url}/healthz`, { headers: { 'X-Request-Id': 'bad id with spaces' } });
  const id = generated.headers.get('x-request-id');
  assert.match(id ?? '', UUID);
});
