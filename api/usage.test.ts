// GET /v1/usage on the real app over HTTP: ledger rows written the way workers write them
// (db/usage.repository.ts recordUsage), summed per UTC day or model over [from, to).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createApiKey } from '../db/api-keys.repository.ts';
import type { UsageOutcome } from '../db/types.ts';
import { recordUsage } from '../db/usage.repository.ts';
import { call, startTestApi, type TestApi } from './testing.ts';
import type { UsageResource } from './usage.schemas.ts';

const DAY_MS = 86_400_000;

let api: TestApi;
let admin: { id: string; key: string };
let alice: { id: string; key: string };
let bob: { id: string; key: string };
/** The default range's start when the rows were written: 00:00 UTC 29 days before today. */
let defaultFrom: number;

interface Row {
  key: () => string;
  at: string;
  model: string | null;
  outcome: UsageOutcome;
  us: number;
  images?: number;
  pixelSteps: number;
}

async function record(row: Row) {
  await recordUsage(api.t.db, {
    generation_id: randomUUID(),
    attempt: 1,
    api_key_id: row.key(),
    model: row.model,
    outcome: row.outcome,
    recorded_at: new Date(row.at),
    accelerator_us: row.us,
    images: row.images ?? 0,
    pixel_steps: row.pixelSteps,
  });
}

before(async () => {
  api = await startTestApi('api_usage');
  const created = await createApiKey(api.t.db, { name: 'operator', admin: true });
  admin = { id: created.apiKey.id, key: created.key };
  alice = await api.newKey('alice');
  bob = await api.newKey('bob');
  const a = () => alice.id;
  // Around the leap day 2024-02-29, on the edges of UTC days.
  const rows: Row[] = [
    { key: a, at: '2024-02-28T23:59:59.999Z', model: 'sd15', outcome: 'canceled', us: 333, pixelSteps: 20 },
    {
      key: a,
      at: '2024-02-29T00:00:00.000Z',
      model: 'sd15',
      outcome: 'succeeded',
      us: 1500,
      images: 2,
      pixelSteps: 100,
    },
    { key: a, at: '2024-02-29T23:59:59.999Z', model: 'demo', outcome: 'failed', us: 250, pixelSteps: 10 },
    {
      key: a,
      at: '2024-03-01T00:00:00.000Z',
      model: 'sd15',
      outcome: 'succeeded',
      us: 1001,
      images: 1,
      pixelSteps: 50,
    },
    { key: a, at: '2024-03-01T12:00:00.000Z', model: null, outcome: 'retry', us: 7, pixelSteps: 3 },
    {
      key: a,
      at: '2024-03-02T00:00:00.000Z',
      model: 'sd15',
      outcome: 'succeeded',
      us: 4000,
      images: 1,
      pixelSteps: 60,
    },
    {
      key: () => bob.id,
      at: '2024-02-29T10:00:00.000Z',
      model: 'sd15',
      outcome: 'succeeded',
      us: 5000,
      images: 4,
      pixelSteps: 400,
    },
  ];
  // The default range: its first instant is in, the one before it is out, a minute ago is in.
  const now = Date.now();
  defaultFrom = Math.floor(now / DAY_MS) * DAY_MS - 29 * DAY_MS;
  const iso = (ms: number) => new Date(ms).toISOString();
  rows.push(
    {
      key: a,
      at: iso(defaultFrom - 1),
      model: 'demo',
      outcome: 'succeeded',
      us: 99_999,
      images: 1,
      pixelSteps: 9,
    },
    { key: a, at: iso(defaultFrom), model: 'demo', outcome: 'succeeded', us: 11, images: 1, pixelSteps: 5 },
    { key: a, at: iso(now - 60_000), model: 'demo', outcome: 'canceled', us: 42, pixelSteps: 2 },
  );
  for (const row of rows) await record(row);
});

after(async () => {
  await api?.close();
});

async function usage(key: string, query = ''): Promise<UsageResource> {
  const res = await call(`${api.url}/v1/usage${query}`, { key });
  assert.equal(res.status, 200, await res.clone().text());
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  return (await res.json()) as UsageResource;
}

async function problem(key: string, query: string, status: number) {
  const res = await call(`${api.url}/v1/usage${query}`, { key });
  assert.equal(res.status, status, await res.clone().text());
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  return (await res.json()) as { code: string; errors?: { field: string; message: string }[] };
}

const counters = (attempts: number, generations: number, images: number, pixelSteps: number, ms: number) => ({
  attempts,
  generations,
  images,
  pixel_steps: pixelSteps,
  accelerator_ms: ms,
});

test('by UTC day: from inclusive, to exclusive, days without usage left out', async () => {
  const body = await usage(alice.key, '?from=2024-02-29&to=2024-03-02');
  assert.deepEqual(body, {
    object: 'usage',
    from: '2024-02-29T00:00:00.000Z',
    to: '2024-03-02T00:00:00.000Z',
    group_by: 'day',
    api_key_id: alice.id,
    data: [
      { day: '2024-02-29', ...counters(2, 1, 2, 110, 1.75) },
      { day: '2024-03-01', ...counters(2, 1, 1, 53, 1.008) },
    ],
    total: counters(4, 2, 3, 163, 2.758),
  });
  // A wider range adds the day before and the day after, and nothing in between.
  const wide = await usage(alice.key, '?from=2024-02-01&to=2024-04-01');
  assert.deepEqual(
    wide.data.map((d) => ('day' in d ? [d.day, d.attempts] : [])),
    [
      ['2024-02-28', 1],
      ['2024-02-29', 2],
      ['2024-03-01', 2],
      ['2024-03-02', 1],
    ],
  );
});

test('by model: ordered by id, the rows without a model last', async () => {
  const body = await usage(alice.key, '?from=2024-02-29&to=2024-03-02&group_by=model');
  assert.equal(body.group_by, 'model');
  assert.deepEqual(body.data, [
    { model: 'demo', ...counters(1, 0, 0, 10, 0.25) },
    { model: 'sd15', ...counters(2, 2, 3, 150, 2.501) },
    { model: null, ...counters(1, 0, 0, 3, 0.007) },
  ]);
  assert.deepEqual(body.total, counters(4, 2, 3, 163, 2.758));
});

test('date-times with offsets bound the range to the millisecond', async () => {
  // 01:00+01:00 is 00:00Z: the record at exactly 00:00Z is in.
  const exact = await usage(
    alice.key,
    `?from=${encodeURIComponent('2024-02-29T01:00:00+01:00')}&to=2024-03-01T00:00:00Z`,
  );
  assert.equal(exact.from, '2024-02-29T00:00:00.000Z');
  assert.equal(exact.to, '2024-03-01T00:00:00.000Z');
  assert.deepEqual(exact.total, counters(2, 1, 2, 110, 1.75));
  // One millisecond later on both ends: the first record drops out, the one at 00:00Z on March 1 comes in.
  const shifted = await usage(alice.key, '?from=2024-02-29T00:00:00.001Z&to=2024-03-01T00:00:00.001Z');
  assert.deepEqual(shifted.total, counters(2, 1, 1, 60, 1.251));
});

test('defaults: the last 30 UTC days up to now, grouped by day', async () => {
  const asked = Date.now();
  const body = await usage(alice.key);
  const to = Date.parse(body.to);
  assert.ok(to >= asked && to <= Date.now(), `to is now: ${body.to}`);
  assert.equal(body.from, new Date(defaultFrom).toISOString());
  assert.equal(body.group_by, 'day');
  assert.equal(body.api_key_id, alice.id);
  // The record at the range's first instant and the one a minute ago; not the one just before.
  assert.deepEqual(body.total, counters(2, 1, 1, 7, 0.053));
  assert.deepEqual(body.data[0], {
    day: new Date(defaultFrom).toISOString().slice(0, 10),
    ...counters(1, 1, 1, 5, 0.011),
  });

  // `to` alone: the 30 UTC days ending with the day before it (it is exclusive).
  const march = await usage(alice.key, '?to=2024-03-02');
  assert.equal(march.from, '2024-02-01T00:00:00.000Z');
  assert.deepEqual(march.total, counters(5, 2, 3, 183, 3.091));
  // …and with a time of day, the day it falls in is the last.
  const midday = await usage(alice.key, '?to=2024-03-02T12:00:00Z');
  assert.equal(midday.from, '2024-02-02T00:00:00.000Z');
  assert.equal(midday.total.attempts, 6);
});

test('an empty, reversed or too long range, or a malformed parameter, is 422 naming it', async () => {
  const cases: [string, string, RegExp][] = [
    ['?from=2024-03-01&to=2024-03-01', 'from', /before to/],
    ['?from=2024-03-02&to=2024-03-01', 'from', /before to/],
    ['?from=2024-01-01&to=2025-01-02', 'to', /at most 366 days/],
    ['?from=2020-01-01', 'to', /at most 366 days/],
    ['?from=2024-02-30', 'from', /RFC 3339/],
    ['?to=2024-03-01T00:00:00', 'to', /time zone/],
    ['?to=yesterday', 'to', /YYYY-MM-DD/],
    ['?from=0000-01-01', 'from', /between 1970/],
    ['?group_by=week', 'group_by', /day or model/],
  ];
  for (const [query, field, message] of cases) {
    const body = await problem(alice.key, query, 422);
    assert.equal(body.code, 'validation_failed', query);
    assert.equal(body.errors?.length, 1, query);
    assert.equal(body.errors?.[0]?.field, field, query);
    assert.match(body.errors?.[0]?.message ?? '', message, query);
  }
  // 366 days exactly (2024 is a leap year) is allowed.
  const year = await usage(alice.key, '?from=2024-01-01&to=2025-01-01');
  assert.equal(year.total.attempts, 6);
  const malformedKey = await problem(admin.key, '?api_key_id=alice', 422);
  assert.equal(malformedKey.errors?.[0]?.field, 'api_key_id');
});

test("an admin key reads any key's usage, or all of them; an unknown id has none", async () => {
  const range = '?from=2024-02-29&to=2024-03-02';
  const ofBob = await usage(admin.key, `${range}&api_key_id=${bob.id}`);
  assert.equal(ofBob.api_key_id, bob.id);
  assert.deepEqual(ofBob.data, [{ day: '2024-02-29', ...counters(1, 1, 4, 400, 5) }]);

  const all = await usage(admin.key, `${range}&api_key_id=all&group_by=model`);
  assert.equal(all.api_key_id, null);
  assert.deepEqual(all.data, [
    { model: 'demo', ...counters(1, 0, 0, 10, 0.25) },
    { model: 'sd15', ...counters(3, 3, 7, 550, 7.501) },
    { model: null, ...counters(1, 0, 0, 3, 0.007) },
  ]);
  assert.deepEqual(all.total, counters(5, 3, 7, 563, 7.758));

  const unknown = randomUUID();
  const none = await usage(admin.key, `${range}&api_key_id=${unknown}`);
  assert.equal(none.api_key_id, unknown);
  assert.deepEqual(none.data, []);
  assert.deepEqual(none.total, counters(0, 0, 0, 0, 0));

  // Without api_key_id an admin key reads its own usage, like any key.
  const own = await usage(admin.key, range);
  assert.equal(own.api_key_id, admin.id);
  assert.deepEqual(own.data, []);
});

test('other keys see only their own usage: api_key_id is 403 forbidden, whichever key it names', async () => {
  const range = '?from=2024-02-29&to=2024-03-02';
  for (const id of [bob.id, 'all', alice.id]) {
    const body = await problem(alice.key, `${range}&api_key_id=${id}`, 403);
    assert.equal(body.code, 'forbidden');
  }
  const ofBob = await usage(bob.key, range);
  assert.equal(ofBob.api_key_id, bob.id);
  assert.deepEqual(ofBob.total, counters(1, 1, 4, 400, 5), "none of alice's records");
  const res = await call(`${api.url}/v1/usage`);
  assert.equal(res.status, 401);
});

test('an attempt is recorded once: a repeated record leaves the first', async () => {
  const generationId = randomUUID();
  const key = await api.newKey('repeat');
  const once = {
    generation_id: generationId,
    attempt: 1,
    api_key_id: key.id,
    model: 'demo',
    outcome: 'succeeded' as const,
    recorded_at: new Date('2024-06-01T00:00:00Z'),
    accelerator_us: 1234,
    images: 1,
    pixel_steps: 10,
  };
  await recordUsage(api.t.db, once);
  await recordUsage(api.t.db, { ...once, outcome: 'failed', accelerator_us: 9999, images: 0 });
  await recordUsage(api.t.db, { ...once, attempt: 2, outcome: 'retry', accelerator_us: 1, images: 0 });
  const body = await usage(key.key, '?from=2024-06-01&to=2024-06-02');
  assert.deepEqual(body.total, counters(2, 1, 1, 20, 1.235));
});
