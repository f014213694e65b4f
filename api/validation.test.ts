import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { UNHANDLED_ERROR } from '../shared/log-events.ts';
import type { ProblemDocument } from './errors.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;
let key: string;
let keyId: string;

const BODY_LIMIT = 4096;

before(async () => {
  api = await startTestApi('api_validation', { BODY_LIMIT_BYTES: String(BODY_LIMIT) });
  ({ key, id: keyId } = await api.newKey('validation'));
});
after(async () => {
  await api?.close();
});

async function post(init: Parameters<typeof call>[1]) {
  const res = await call(`${api.url}/v1/generations`, { key, ...init });
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const problem = (await res.json()) as ProblemDocument;
  assert.equal(problem.status, res.status);
  assert.equal(problem.instance, '/v1/generations');
  assert.equal(problem.type, `urn:easel:problem:${problem.code}`);
  assert.equal(problem.stack, undefined);
  return { status: res.status, problem };
}

async function assertNothingStored() {
  const rows = await api.t.db
    .selectFrom('generations')
    .select('id')
    .where('api_key_id', '=', keyId)
    .execute();
  assert.equal(rows.length, 0, 'an invalid request stored nothing');
}

test('malformed JSON is 400 invalid_json', async () => {
  for (const body of ['{"prompt":', 'prompt=cat', '{"prompt": "cat",}']) {
    const { status, problem } = await post({ body, headers: { 'Content-Type': 'application/json' } });
    assert.equal(status, 400, body);
    assert.equal(problem.code, 'invalid_json');
  }
  await assertNothingStored();
});

const invalid: Array<[string, Record<string, unknown> | unknown, string]> = [
  ['missing prompt', { width: 512 }, 'prompt'],
  ['prompt not a string', { prompt: 123 }, 'prompt'],
  ['prompt blank after trimming', { prompt: '   ' }, 'prompt'],
  ['prompt too long', { prompt: 'x'.repeat(2001) }, 'prompt'],
  ['negative_prompt too long', { prompt: 'a', negative_prompt: 'x'.repeat(2001) }, 'negative_prompt'],
  ['negative_prompt null', { prompt: 'a', negative_prompt: null }, 'negative_prompt'],
  ['width as string', { prompt: 'a', width: '512' }, 'width'],
  ['width 63', { prompt: 'a', width: 63 }, 'width'],
  ['width 56 (multiple of 8, too small)', { prompt: 'a', width: 56 }, 'width'],
  ['width 2056', { prompt: 'a', width: 2056 }, 'width'],
  ['width 100 (not a multiple of 8)', { prompt: 'a', width: 100 }, 'width'],
  ['width 512.5', { prompt: 'a', width: 512.5 }, 'width'],
  ['height 100', { prompt: 'a', height: 100 }, 'height'],
  ['height 0', { prompt: 'a', height: 0 }, 'height'],
  ['steps 0', { prompt: 'a', steps: 0 }, 'steps'],
  ['steps 151', { prompt: 'a', steps: 151 }, 'steps'],
  ['steps 2.5', { prompt: 'a', steps: 2.5 }, 'steps'],
  ['guidance_scale 31', { prompt: 'a', guidance_scale: 31 }, 'guidance_scale'],
  ['guidance_scale -0.5', { prompt: 'a', guidance_scale: -0.5 }, 'guidance_scale'],
  ['guidance_scale as string', { prompt: 'a', guidance_scale: '7.5' }, 'guidance_scale'],
  ['seed -1', { prompt: 'a', seed: -1 }, 'seed'],
  ['seed 2^32', { prompt: 'a', seed: 4_294_967_296 }, 'seed'],
  ['seed 1.5', { prompt: 'a', seed: 1.5 }, 'seed'],
  ['seed null', { prompt: 'a', seed: null }, 'seed'],
  ['num_images 5', { prompt: 'a', num_images: 5 }, 'num_images'],
  ['num_images 0', { prompt: 'a', num_images: 0 }, 'num_images'],
  ['unknown field', { prompt: 'a', colour: 'red' }, 'colour'],
  ['body is an array', [{ prompt: 'a' }], 'body'],
  ['body is null', null, 'body'],
  ['body is a string', 'a cat', 'body'],
];

for (const [name, json, field] of invalid) {
  test(`422 validation_failed names the field: ${name}`, async () => {
    const { status, problem } = await post({
      body: JSON.stringify(json),
      headers: { 'Content-Type': 'application/json' },
    });
    assert.equal(status, 422);
    assert.equal(problem.code, 'validation_failed');
    assert.ok(Array.isArray(problem.errors) && problem.errors.length > 0);
    assert.deepEqual(
      problem.errors.map((e) => e.field),
      [field],
      JSON.stringify(problem.errors),
    );
    for (const e of problem.errors) assert.ok(e.message.length > 0);
  });
}

test('several invalid fields are all listed', async () => {
  const { status, problem } = await post({ json: { width: 63, steps: 0, extra: 1, more: 2 } });
  assert.equal(status, 422);
  assert.deepEqual(problem.errors?.map((e) => e.field).sort(), ['extra', 'more', 'prompt', 'steps', 'width']);
  assert.equal(problem.errors?.find((e) => e.field === 'prompt')?.message, 'is required');
  assert.equal(problem.errors?.find((e) => e.field === 'extra')?.message, 'unknown field');
});

test('field messages say what is wrong in plain words', async () => {
  const { problem } = await post({
    json: { width: 100, height: 2056, seed: 1.5, guidance_scale: '7', negative_prompt: 3, colour: 'red' },
  });
  assert.deepEqual(problem.errors, [
    { field: 'prompt', message: 'is required' },
    { field: 'negative_prompt', message: 'must be a string, not a number' },
    { field: 'width', message: 'must be a multiple of 8' },
    { field: 'height', message: 'must be at most 2048' },
    { field: 'guidance_scale', message: 'must be a number, not a string' },
    { field: 'seed', message: 'must be an integer' },
    { field: 'colour', message: 'unknown field' },
  ]);
  assert.equal(problem.detail, 'The request body has 7 invalid fields.');
});

test('width*height over MAX_PIXELS is 422 pixel_limit_exceeded naming width and height', async () => {
  const { status, problem } = await post({ json: { prompt: 'a', width: 2048, height: 1024 } });
  assert.equal(status, 422);
  assert.equal(problem.code, 'pixel_limit_exceeded');
  assert.deepEqual(
    problem.errors?.map((e) => e.field),
    ['width', 'height'],
  );
  assert.match(problem.detail, /2097152/);
  await assertNothingStored();

  // Exactly at the limit is accepted.
  const ok = await call(`${api.url}/v1/generations`, {
    key,
    json: { prompt: 'a', width: 1024, height: 1024 },
  });
  assert.equal(ok.status, 202);
  await api.t.db.deleteFrom('generations').where('api_key_id', '=', keyId).execute();
});

test('a body that is not application/json is 415 unsupported_media_type', async () => {
  const body = JSON.stringify({ prompt: 'a' });
  for (const headers of [
    { 'Content-Type': 'text/plain' },
    { 'Content-Type': 'application/x-www-form-urlencoded' },
    { 'Content-Type': 'application/merge-patch+json' },
    { 'Content-Type': 'multipart/form-data; boundary=x' },
  ]) {
    const { status, problem } = await post({ body, headers });
    assert.equal(status, 415, headers['Content-Type']);
    assert.equal(problem.code, 'unsupported_media_type');
  }
  // No Content-Type at all (a Blob body with an empty type sends none).
  const { status } = await post({ body: new Blob([body]) });
  assert.equal(status, 415);
  // A charset parameter is fine.
  const res = await call(`${api.url}/v1/generations`, {
    key,
    body,
    headers: { 'Content-Type': 'application/json; charset=utf-8' },
  });
  assert.equal(res.status, 202);
  await api.t.db.deleteFrom('generations').where('api_key_id', '=', keyId).execute();
});

test('a body over BODY_LIMIT_BYTES is 413 payload_too_large, with or without Content-Length', async () => {
  const big = JSON.stringify({ prompt: 'a', negative_prompt: 'x'.repeat(BODY_LIMIT) });
  const sized = await post({ json: JSON.parse(big) });
  assert.equal(sized.status, 413);
  assert.equal(sized.problem.code, 'payload_too_large');

  // Chunked (no Content-Length): the limit is enforced while reading.
  const encoded = new TextEncoder().encode(big);
  const stream = new ReadableStream({
    start(controller) {
      for (let i = 0; i < encoded.length; i += 1024) controller.enqueue(encoded.subarray(i, i + 1024));
      controller.close();
    },
  });
  const res = await fetch(`${api.url}/v1/generations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: stream,
    duplex: 'half',
  } as RequestInit);
  assert.equal(res.status, 413);
  assert.equal(((await res.json()) as ProblemDocument).code, 'payload_too_large');
  await assertNothingStored();
});

test('unknown routes are problem+json 404s (a known path with another method: protocol.test.ts)', async () => {
  for (const [method, path] of [
    ['GET', '/v2/nothing'],
    ['DELETE', '/v2/nothing'],
  ]) {
    const res = await fetch(`${api.url}${path}`, { method });
    assert.equal(res.status, 404);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.equal(((await res.json()) as ProblemDocument).code, 'not_found');
  }
});

test('no validation failure was logged as an unhandled error', () => {
  assert.deepEqual(
    api.logs.filter((l) => l.msg === UNHANDLED_ERROR || l.level >= 50),
    [],
  );
});
