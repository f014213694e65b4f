import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { insertGeneration } from '../db/generations.repository.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';
import type { ProblemDocument } from './errors.ts';
import type { GenerationListResource } from './generations.schemas.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;
let alice: { id: string; key: string };
let bob: { id: string; key: string };

before(async () => {
  api = await startTestApi('api_list');
  alice = await api.newKey('alice');
  bob = await api.newKey('bob');
});
after(async () => {
  await api?.close();
});

async function list(key: string, query: Record<string, string> = {}) {
  const res = await call(`${api.url}/v1/generations?${new URLSearchParams(query)}`, { key });
  return { res, body: (await res.json()) as GenerationListResource & ProblemDocument };
}

async function createVia(key: string, prompt: string) {
  const res = await call(`${api.url}/v1/generations`, { key, json: { prompt } });
  assert.equal(res.status, 202);
  return ((await res.json()) as { id: string }).id;
}

/** Every id of the key, newest first, as the database orders them (created_at, then id). */
async function allIds(apiKeyId: string) {
  const rows = await api.t.db
    .selectFrom('generations')
    .select('id')
    .where('api_key_id', '=', apiKeyId)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
  return rows.map((r) => r.id);
}

test('cursors round-trip and anything else does not decode', () => {
  const position = { createdAt: '2026-11-28T10:15:30.123Z', id: randomUUID() };
  assert.deepEqual(decodeCursor(encodeCursor(position)), position);
  for (const bad of [
    'garbage!',
    Buffer.from('not json').toString('base64url'),
    Buffer.from('["2026-11-28T10:15:30.123Z","x"]').toString('base64url'),
    Buffer.from(JSON.stringify(['2026-11-28T10:15:30.123456Z', position.id])).toString('base64url'),
    Buffer.from(JSON.stringify({ createdAt: position.createdAt, id: position.id })).toString('base64url'),
  ]) {
    assert.equal(decodeCursor(bad), undefined, bad);
  }
});

test('paging with limit 7 while rows are inserted between pages returns the original 25 exactly, newest first', async () => {
  // 19 through the API; 5 inserted with one shared created_at (ties broken by id) and one a
  // microsecond older, which millisecond storage rounds into the tie: a page boundary falls inside
  // the tie, where a cursor without the id would skip rows.
  for (let i = 0; i < 19; i++) await createVia(alice.key, `page item ${i}`);
  const tied = '2020-01-01 00:00:00.123456+00';
  for (let i = 0; i < 5; i++) {
    await insertGeneration(api.t.db, {
      id: randomUUID(),
      api_key_id: alice.id,
      prompt: `tied item ${i}`,
      negative_prompt: '',
      width: 512,
      height: 512,
      steps: 25,
      guidance_scale: 7.5,
      num_images: 1,
      seed: 1,
      created_at: tied,
    });
  }
  await insertGeneration(api.t.db, {
    id: randomUUID(),
    api_key_id: alice.id,
    prompt: 'a microsecond older than the tied ones',
    negative_prompt: '',
    width: 512,
    height: 512,
    steps: 25,
    guidance_scale: 7.5,
    num_images: 1,
    seed: 1,
    created_at: '2020-01-01 00:00:00.123455+00',
  });
  await createVia(bob.key, "bob's, never in alice's list");
  const original = await allIds(alice.id);
  assert.equal(original.length, 25);

  const seen: string[] = [];
  const pageSizes: number[] = [];
  let cursor: string | null = null;
  let inserted = 0;
  do {
    const { res, body }: { res: Response; body: GenerationListResource } = await list(alice.key, {
      limit: '7',
      ...(cursor ? { cursor } : {}),
    });
    assert.equal(res.status, 200);
    assert.equal(body.object, 'list');
    assert.equal(body.has_more, body.next_cursor !== null);
    seen.push(...body.data.map((g) => g.id));
    pageSizes.push(body.data.length);
    cursor = body.next_cursor;
    // New rows between page fetches must not shift the pages still to come.
    await createVia(alice.key, `inserted while paging ${inserted++}`);
    await createVia(bob.key, `bob inserted while paging ${inserted}`);
  } while (cursor);

  assert.deepEqual(pageSizes, [7, 7, 7, 4]);
  assert.deepEqual(seen, original);
});

test('the default page size is 20 and limit must be 1..100', async () => {
  const { body } = await list(alice.key);
  assert.equal(body.data.length, 20);
  assert.equal(body.has_more, true);
  const full = await list(alice.key, { limit: '100' });
  assert.equal(full.res.status, 200);
  assert.equal(full.body.has_more, false);
  assert.equal(full.body.next_cursor, null);
  assert.deepEqual(
    full.body.data.map((g) => g.id),
    await allIds(alice.id),
  );
  for (const limit of ['0', '101', 'ten', '1.5']) {
    const { res, body: problem } = await list(alice.key, { limit });
    assert.equal(res.status, 422, limit);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.equal(problem.code, 'validation_failed');
    assert.deepEqual(
      problem.errors?.map((e) => e.field),
      ['limit'],
    );
  }
});

test('an invalid cursor is 422 validation_failed naming cursor', async () => {
  const valid = encodeCursor({ createdAt: '2026-11-28T10:15:30.123Z', id: randomUUID() }, alice.id);
  for (const cursor of ['garbage!', 'bm90IGpzb24', valid.slice(0, -3), '']) {
    const { res, body } = await list(alice.key, { cursor });
    assert.equal(res.status, 422, cursor);
    assert.equal(body.code, 'validation_failed');
    assert.deepEqual(
      body.errors?.map((e) => e.field),
      ['cursor'],
    );
  }
});

test('status filters by one status or several, comma-separated; an unknown status is 422', async () => {
  const ids = await allIds(alice.id);
  const [s1, s2, f1] = ids;
  await api.t.db
    .updateTable('generations')
    .set({ status: 'succeeded', finished_at: new Date() })
    .where('id', 'in', [s1 as string, s2 as string])
    .execute();
  await api.t.db
    .updateTable('generations')
    .set({ status: 'failed', finished_at: new Date() })
    .where('id', '=', f1 as string)
    .execute();

  const succeeded = await list(alice.key, { status: 'succeeded' });
  assert.deepEqual(
    succeeded.body.data.map((g) => g.id),
    [s1, s2],
  );
  const finished = await list(alice.key, { status: 'failed,succeeded' });
  assert.deepEqual(
    finished.body.data.map((g) => g.id),
    [s1, s2, f1],
  );
  const queued = await list(alice.key, { status: 'queued', limit: '100' });
  assert.equal(queued.body.data.length, ids.length - 3);
  assert.ok(queued.body.data.every((g) => g.status === 'queued'));

  for (const status of ['done', 'queued,', 'queued,,failed', 'QUEUED']) {
    const { res, body } = await list(alice.key, { status });
    assert.equal(res.status, 422, status);
    assert.deepEqual(
      body.errors?.map((e) => e.field),
      ['status'],
    );
  }
});

test('queue_position in a listing matches the single-generation read', async () => {
  const { body } = await list(alice.key, { status: 'queued', limit: '3' });
  for (const item of body.data) {
    const res = await call(`${api.url}/v1/generations/${item.id}`, { key: alice.key });
    const single = (await res.json()) as { queue_position: number };
    assert.equal(item.queue_position, single.queue_position);
  }
  const { body: done } = await list(alice.key, { status: 'succeeded' });
  assert.ok(done.data.every((g) => g.queue_position === null));
});

test('created_after and created_before bound created_at exclusively', async () => {
  const rows = await api.t.db
    .selectFrom('generations')
    .select([
      'id',
      sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as('at'),
    ])
    .where('api_key_id', '=', alice.id)
    .where('prompt', 'like', 'page item %')
    .orderBy('created_at', 'desc')
    .execute();
  const newest = rows[0];
  const oldest = rows.at(-1);
  assert.ok(newest && oldest);

  const between = await list(alice.key, {
    created_after: oldest.at,
    created_before: newest.at,
    limit: '100',
  });
  assert.equal(between.res.status, 200);
  assert.deepEqual(
    between.body.data.map((g) => g.id),
    rows.slice(1, -1).map((r) => r.id),
  );
  const old = await list(alice.key, { created_before: '2021-01-01T00:00:00Z' });
  assert.equal(old.body.data.length, 6);
  assert.ok(old.body.data.every((g) => g.created_at.startsWith('2020-01-01T00:00:00.123')));
  // Stored to the millisecond, as shown: all six are at .123, so before .123 is none of them.
  const withOffset = await list(alice.key, { created_before: '2020-01-01T01:00:00.124+01:00' });
  assert.equal(withOffset.body.data.length, 6);
  const atTheTie = await list(alice.key, { created_before: '2020-01-01T01:00:00.123+01:00' });
  assert.equal(atTheTie.body.data.length, 0);

  for (const [name, value] of [
    ['created_after', 'yesterday'],
    ['created_before', '2026-11-28T10:15:30'],
  ] as const) {
    const { res, body } = await list(alice.key, { [name]: value });
    assert.equal(res.status, 422, value);
    assert.deepEqual(
      body.errors?.map((e) => e.field),
      [name],
    );
  }
});

test('a key sees only its own generations, and a key with none gets an empty list', async () => {
  const { body } = await list(bob.key, { limit: '100' });
  assert.ok(body.data.length > 0);
  assert.deepEqual(
    body.data.map((g) => g.id),
    await allIds(bob.id),
  );
  const carol = await api.newKey('carol');
  const empty = await list(carol.key);
  assert.deepEqual(empty.body, { object: 'list', data: [], next_cursor: null, has_more: false });
  // Alice's cursor was not handed to Bob: 422, as for any cursor this API did not hand out.
  const alicePage = await list(alice.key, { limit: '1' });
  const mixed = await list(bob.key, { cursor: alicePage.body.next_cursor as string, limit: '100' });
  assert.equal(mixed.res.status, 422);
  assert.deepEqual(
    mixed.body.errors?.map((e) => e.field),
    ['cursor'],
  );
});

test('listing without a key is 401', async () => {
  const res = await fetch(`${api.url}/v1/generations`);
  assert.equal(res.status, 401);
  assert.equal(res.headers.get('www-authenticate'), 'Bearer');
});
