// Daily quotas per API key through the HTTP API on a real database: refusals exact at the
// boundary (also when two API processes race for the last image), Retry-After to 00:00 UTC, what
// counts against a quota, and that nothing accepted is refused later.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { updateApiKey } from '../db/api-keys.repository.ts';
import type { ProblemDocument } from './errors.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;

before(async () => {
  api = await startTestApi('api_quotas', { MAX_IN_FLIGHT_PER_KEY: '1000' });
});
after(async () => {
  await api?.close();
});

function create(url: string, key: string, numImages = 1) {
  return call(`${url}/v1/generations`, { key, json: { prompt: 'a quota', num_images: numImages } });
}

async function quotaProblem(res: Response) {
  assert.equal(res.status, 429);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const problem = (await res.json()) as ProblemDocument & {
    quota?: { limit: string; limit_value: number; used: number; requested?: number; resets_at: string };
  };
  assert.equal(problem.code, 'quota_exceeded');
  assert.ok(problem.quota, 'the quota member names the limit');
  // Retry-After runs to the next 00:00 UTC, which resets_at states.
  const resetsAt = new Date(problem.quota.resets_at);
  const midnight = new Date();
  midnight.setUTCHours(24, 0, 0, 0);
  assert.equal(resetsAt.getTime(), midnight.getTime());
  const retryAfter = Number(res.headers.get('retry-after'));
  const untilMidnight = (midnight.getTime() - Date.now()) / 1000;
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After ${retryAfter}`);
  assert.ok(
    Math.abs(retryAfter - untilMidnight) <= 5,
    `Retry-After ${retryAfter} vs ${untilMidnight} s to midnight`,
  );
  return problem;
}

test('images per day: the last image is given, one more is refused, and the refusal names the limit', async () => {
  const tenant = await api.newKey('images');
  await updateApiKey(api.t.db, tenant.id, { imagesPerDay: 5 });
  assert.equal((await create(api.url, tenant.key, 2)).status, 202);
  assert.equal((await create(api.url, tenant.key, 2)).status, 202);
  // 4 used: 2 more would be 6.
  const over = await quotaProblem(await create(api.url, tenant.key, 2));
  assert.deepEqual(
    {
      limit: over.quota?.limit,
      limit_value: over.quota?.limit_value,
      used: over.quota?.used,
      requested: over.quota?.requested,
    },
    { limit: 'images_per_day', limit_value: 5, used: 4, requested: 2 },
  );
  // Exactly the fifth image is still given.
  assert.equal((await create(api.url, tenant.key, 1)).status, 202);
  await quotaProblem(await create(api.url, tenant.key, 1));

  // A canceled generation gives its images back; a succeeded one keeps counting.
  const { rows } = await sql<{ id: string }>`select id::text from generations
    where api_key_id = ${tenant.id} and num_images = 2 order by created_at limit 2`.execute(api.t.db);
  const [canceled, succeeded] = rows.map((r) => r.id);
  assert.equal(
    (await call(`${api.url}/v1/generations/${canceled}/cancel`, { key: tenant.key, method: 'POST' })).status,
    200,
  );
  await api.t.db
    .updateTable('generations')
    .set({ status: 'succeeded' })
    .where('id', '=', succeeded as string)
    .execute();
  assert.equal((await create(api.url, tenant.key, 2)).status, 202);
  await quotaProblem(await create(api.url, tenant.key, 1));

  // Yesterday's images do not count.
  await api.t.db
    .updateTable('generations')
    .set({ created_at: sql`now() - interval '1 day'` })
    .where('api_key_id', '=', tenant.id)
    .execute();
  assert.equal((await create(api.url, tenant.key, 4)).status, 202);
});

test('two API processes racing for the last images admit exactly the quota', async () => {
  const tenant = await api.newKey('racing');
  await updateApiKey(api.t.db, tenant.id, { imagesPerDay: 7 });
  // A second app with its own create path: its own batches, transactions and pool connections.
  const other = await api.serveVariant({});
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => create(i % 2 === 0 ? api.url : other.url, tenant.key, 1)),
  );
  const statuses = results.map((r) => r.status);
  assert.equal(statuses.filter((s) => s === 202).length, 7, `statuses ${statuses.join(',')}`);
  assert.equal(statuses.filter((s) => s === 429).length, 13);
  for (const res of results)
    if (res.status === 429) assert.equal(((await res.json()) as ProblemDocument).code, 'quota_exceeded');
  const counted = await api.t.db
    .selectFrom('generations')
    .select((eb) => eb.fn.sum<number>('num_images').as('images'))
    .where('api_key_id', '=', tenant.id)
    .executeTakeFirstOrThrow();
  assert.equal(Number(counted.images), 7);
});

async function recordAcceleratorUs(apiKeyId: string, us: number, recordedAt = sql`now()`) {
  await sql`insert into usage_records (generation_id, attempt, api_key_id, model, outcome, recorded_at,
      accelerator_us, images, pixel_steps)
    values (${randomUUID()}, 1, ${apiKeyId}, 'demo', 'succeeded', ${recordedAt}, ${us}, 1, 4096)`.execute(
    api.t.db,
  );
}

test('accelerator seconds per day: accepted below the limit to the microsecond, refused at it', async () => {
  const tenant = await api.newKey('accelerator');
  await updateApiKey(api.t.db, tenant.id, { acceleratorSecondsPerDay: 2 });
  // Yesterday's use does not count (recorded_at keeps milliseconds: the last one of yesterday).
  await recordAcceleratorUs(
    tenant.id,
    5_000_000,
    sql`date_trunc('day', now() at time zone 'UTC') at time zone 'UTC' - interval '1 millisecond'`,
  );
  await recordAcceleratorUs(tenant.id, 1_999_999);
  assert.equal((await create(api.url, tenant.key)).status, 202, '1.999999 s of 2 used: accepted');
  await recordAcceleratorUs(tenant.id, 1);
  const over = await quotaProblem(await create(api.url, tenant.key));
  assert.deepEqual(
    { limit: over.quota?.limit, limit_value: over.quota?.limit_value, used: over.quota?.used },
    { limit: 'accelerator_seconds_per_day', limit_value: 2, used: 2 },
  );
  // The accepted generation is still queued: a quota never refuses what was accepted.
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from generations
    where api_key_id = ${tenant.id} and status = 'queued'`.execute(api.t.db);
  assert.equal(rows[0]?.n, 1);
  // Lifting the limit takes effect on the next create.
  await updateApiKey(api.t.db, tenant.id, { acceleratorSecondsPerDay: null });
  assert.equal((await create(api.url, tenant.key)).status, 202);
});

test('a key without quotas is never refused for them, and a quota of 0 refuses every create', async () => {
  const free = await api.newKey('free');
  assert.equal((await create(api.url, free.key, 4)).status, 202);
  const none = await api.newKey('none');
  await updateApiKey(api.t.db, none.id, { imagesPerDay: 0 });
  await quotaProblem(await create(api.url, none.key, 1));
});
