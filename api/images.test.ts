import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { type ObjectStore, outputKey } from '../shared/object-store.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;
let alice: { id: string; key: string };
let bob: { id: string; key: string };
let succeededId: string;
const images = [Buffer.from('first fake jpeg'), Buffer.from('second fake jpeg, longer')];

before(async () => {
  api = await startTestApi('api_images');
  alice = await api.newKey('alice');
  bob = await api.newKey('bob');

  const res = await call(`${api.url}/v1/generations`, {
    key: alice.key,
    json: { prompt: 'two', num_images: 2 },
  });
  succeededId = ((await res.json()) as { id: string }).id;
  const outputs = [];
  for (const [index, image] of images.entries()) {
    const key = outputKey(succeededId, index);
    const put = await api.store.put(key, image, 'image/jpeg');
    outputs.push({ index, key, width: 512, height: 512, content_type: 'image/jpeg', ...put });
  }
  await api.t.db
    .updateTable('generations')
    .set({ status: 'succeeded', outputs: JSON.stringify(outputs.reverse()), finished_at: new Date() })
    .where('id', '=', succeededId)
    .execute();
});
after(async () => {
  await api?.close();
});

function image(id: string, index: string | number, key: string) {
  return fetch(`${api.url}/v1/generations/${id}/images/${index}`, {
    headers: { Authorization: `Bearer ${key}` },
    redirect: 'manual',
  });
}

test('302 to a fresh presigned URL that downloads the image bytes', async () => {
  for (const [index, bytes] of images.entries()) {
    const res = await image(succeededId, index, alice.key);
    assert.equal(res.status, 302);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const location = res.headers.get('location') ?? '';
    assert.ok(location.startsWith(api.s3.endpoint), location);
    assert.match(location, /X-Amz-Signature=/);
    const download = await fetch(location);
    assert.equal(download.status, 200);
    assert.deepEqual(Buffer.from(await download.arrayBuffer()), bytes);
  }
});

test('following the redirect with a plain fetch gets the bytes', async () => {
  const res = await fetch(`${api.url}/v1/generations/${succeededId}/images/1`, {
    headers: { Authorization: `Bearer ${alice.key}` },
  });
  assert.equal(res.status, 200);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), images[1]);
});

test('404 for another key, a bad index, an unknown id, or a generation that has not succeeded', async () => {
  const queued = await call(`${api.url}/v1/generations`, {
    key: alice.key,
    json: { prompt: 'still queued' },
  });
  const queuedId = ((await queued.json()) as { id: string }).id;
  const cases: Array<[string, string | number, string]> = [
    [succeededId, 0, bob.key],
    [succeededId, 2, alice.key],
    [randomUUID(), 0, alice.key],
    ['not-a-uuid', 0, alice.key],
    [queuedId, 0, alice.key],
  ];
  for (const [id, index, key] of cases) {
    const res = await image(id, index, key);
    assert.equal(res.status, 404, `${id}/${index}`);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.equal(((await res.json()) as { code: string }).code, 'not_found');
  }
  const anonymous = await fetch(`${api.url}/v1/generations/${succeededId}/images/0`, { redirect: 'manual' });
  assert.equal(anonymous.status, 401);
});

test('422 naming index when it is not decimal digits; a malformed id is still 404', async () => {
  for (const index of [
    '-1',
    'first',
    '0.5',
    '0%20',
    '%200',
    '+0',
    '1e0',
    '0x0',
    '0b0',
    '',
    '9007199254740993',
  ]) {
    const res = await image(succeededId, index, alice.key);
    if (index === '') {
      // `/images/` is no route at all.
      assert.equal(res.status, 404, 'empty index');
      continue;
    }
    assert.equal(res.status, 422, index);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    const problem = (await res.json()) as { code: string; errors: Array<{ field: string }> };
    assert.equal(problem.code, 'validation_failed', index);
    assert.deepEqual(
      problem.errors.map((e) => e.field),
      ['index'],
      index,
    );
  }
  // Leading zeros are still decimal digits.
  assert.equal((await image(succeededId, '00', alice.key)).status, 302);
  const badId = await image('not-a-uuid', 'x', alice.key);
  assert.equal(badId.status, 404);
});

test('a response that breaks openapi.yaml is caught by the test harness', async () => {
  // A store minting something that is not a URL: the generation's `url` (format uri) and the
  // redirect's Location (format uri) no longer match the document.
  const store = Object.assign(Object.create(api.store) as ObjectStore, {
    presignGet: async () => 'not a url',
  });
  const variant = await api.serveVariant({ store });
  const seen = api.openapiViolations.length;
  const headers = { Authorization: `Bearer ${alice.key}` };
  assert.equal((await fetch(`${variant.url}/v1/generations/${succeededId}`, { headers })).status, 200);
  const redirect = await fetch(`${variant.url}/v1/generations/${succeededId}/images/0`, {
    headers,
    redirect: 'manual',
  });
  assert.equal(redirect.status, 302);
  // Taken out, so that close() does not fail the file for them.
  const caught = api.openapiViolations.splice(seen);
  assert.equal(caught.length, 2, caught.join('\n'));
  assert.match(
    caught[0] ?? '',
    /GET \/v1\/generations\/\S+ → 200: .*outputs\/0\/url must match format "uri"/,
  );
  assert.match(caught[1] ?? '', /→ 302: header Location: not a url: .*must match format "uri"/);
});
