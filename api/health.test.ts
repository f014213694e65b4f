import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { createDb } from '../db/connect.ts';
import { UNHANDLED_ERROR } from '../shared/log-events.ts';
import type { ObjectStore } from '../shared/object-store.ts';
import { renderOpenApiYaml } from './openapi-export.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;

before(async () => {
  api = await startTestApi('api_health');
});
after(async () => {
  await api?.close();
});

test('GET /healthz is 200 {status: ok}', async () => {
  const res = await fetch(`${api.url}/healthz`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: 'ok' });
});

test('GET /readyz is 200 when Postgres and the object store answer', async () => {
  const res = await fetch(`${api.url}/readyz`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: 'ready', checks: { database: 'ok', object_store: 'ok' } });
});

test('GET /openapi.json is an OpenAPI 3.1 document with the paths and bearer security', async () => {
  const res = await fetch(`${api.url}/openapi.json`);
  assert.equal(res.status, 200);
  const doc = (await res.json()) as {
    openapi: string;
    info: { title: string };
    paths: Record<string, Record<string, { responses: Record<string, unknown>; security?: unknown }>>;
    components: { securitySchemes: Record<string, unknown>; schemas: Record<string, unknown> };
  };
  assert.equal(doc.openapi, '3.1.0');
  assert.equal(doc.info.title, 'Easel');
  assert.deepEqual(Object.keys(doc.paths).sort(), [
    '/healthz',
    '/readyz',
    '/v1/events',
    '/v1/generations',
    '/v1/generations/{id}',
    '/v1/generations/{id}/cancel',
    '/v1/generations/{id}/events',
    '/v1/generations/{id}/images/{index}',
    '/v1/generations/{id}/webhook-deliveries',
    '/v1/models',
    '/v1/models/{id}',
    '/v1/usage',
    '/v1/webhook-deliveries/{id}/redeliver',
    '/v1/webhooks/disabled-urls',
    '/v1/webhooks/disabled-urls/{id}',
    '/v1/webhooks/secret',
    '/v1/workers',
  ]);
  assert.deepEqual(doc.components.securitySchemes.bearerAuth, {
    type: 'http',
    scheme: 'bearer',
    description: 'An Easel API key: `Authorization: Bearer esl_...`.',
  });
  const create = doc.paths['/v1/generations']?.post;
  assert.deepEqual(Object.keys(create?.responses ?? {}).sort(), [
    '200',
    '202',
    '400',
    '401',
    '413',
    '415',
    '422',
    '429',
    '500',
    '503',
  ]);
  assert.deepEqual(create?.security, [{ bearerAuth: [] }]);
  const headerParams = (create as { parameters?: Array<{ name: string; in: string }> } | undefined)
    ?.parameters;
  assert.deepEqual(
    headerParams?.map((p) => `${p.in}:${p.name}`),
    ['header:Idempotency-Key', 'header:Prefer'],
  );
  assert.deepEqual(Object.keys(doc.paths['/v1/generations']?.get?.responses ?? {}).sort(), [
    '200',
    '401',
    '422',
    '500',
    '503',
  ]);
  assert.deepEqual(
    Object.keys(doc.paths['/v1/generations/{id}/images/{index}']?.get?.responses ?? {}).sort(),
    ['302', '401', '404', '422', '500', '503'],
  );
  // Every documented /v1 body comes with an example (on the media type, in named examples, or on its schema).
  for (const [path, operations] of Object.entries(doc.paths).filter(([p]) => p.startsWith('/v1/'))) {
    for (const [method, operation] of Object.entries(operations)) {
      for (const [status, response] of Object.entries(operation.responses)) {
        const content = (response as { content?: Record<string, Record<string, unknown>> }).content ?? {};
        for (const [type, media] of Object.entries(content)) {
          const ref = (media.schema as { $ref?: string } | undefined)?.$ref?.split('/').at(-1);
          const schemaExample = ref
            ? (doc.components.schemas[ref] as { example?: unknown }).example
            : undefined;
          assert.ok(
            media.example ?? media.examples ?? schemaExample,
            `${method.toUpperCase()} ${path} ${status} ${type} has an example`,
          );
        }
      }
    }
  }
  for (const name of ['CreateGenerationRequest', 'Generation', 'GenerationList', 'Problem'])
    assert.ok(doc.components.schemas[name], name);
});

test('GET /docs serves the API reference page over /openapi.json', async () => {
  const res = await fetch(`${api.url}/docs`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
  assert.match(await res.text(), /\/openapi\.json/);
});

test('openapi.yaml is up to date with the route definitions (npm run openapi)', async () => {
  const committed = await readFile(new URL('../openapi.yaml', import.meta.url), 'utf8');
  assert.equal(committed, renderOpenApiYaml(), 'openapi.yaml is stale: run npm run openapi');
});

test('an unreachable database is 503 service_unavailable with Retry-After, and /readyz says so', async () => {
  // Nothing listens on port 1: every query fails to connect.
  const db = createDb('postgres://postgres@127.0.0.1:1/none', { connectionTimeoutMillis: 500 });
  const variant = await api.serveVariant({ db });
  try {
    const res = await call(`${variant.url}/v1/generations/${randomUUID()}`, { key: 'esl_whatever' });
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.equal(res.headers.get('retry-after'), '5');
    const problem = (await res.json()) as Record<string, unknown>;
    assert.equal(problem.code, 'service_unavailable');
    assert.doesNotMatch(JSON.stringify(problem), /ECONNREFUSED|at .*\.js/);

    const ready = await fetch(`${variant.url}/readyz`);
    assert.equal(ready.status, 503);
    const body = (await ready.json()) as { code: string; checks: Record<string, string> };
    assert.equal(body.code, 'service_unavailable');
    assert.equal(body.checks.object_store, 'ok');
    assert.notEqual(body.checks.database, 'ok');
  } finally {
    await db.destroy();
  }
});

test('an unexpected error is a bare 500 internal_error; the stack goes to the log only', async () => {
  const broken: ObjectStore = {
    ...api.store,
    presignGet: async () => {
      throw new TypeError('secret internal detail');
    },
  };
  const variant = await api.serveVariant({ store: broken });
  const { key } = await api.newKey('errors');
  const created = await call(`${api.url}/v1/generations`, { key, json: { prompt: 'a' } });
  const { id } = (await created.json()) as { id: string };
  await api.t.db
    .updateTable('generations')
    .set({
      status: 'succeeded',
      outputs: JSON.stringify([
        { index: 0, key: 'k', width: 512, height: 512, content_type: 'image/jpeg', bytes: 1, sha256: 'x' },
      ]),
    })
    .where('id', '=', id)
    .execute();

  const res = await call(`${variant.url}/v1/generations/${id}`, {
    key,
    headers: { 'X-Request-Id': 'boom-1' },
  });
  assert.equal(res.status, 500);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const text = await res.text();
  assert.doesNotMatch(text, /secret internal detail|TypeError|stack/);
  assert.deepEqual(JSON.parse(text), {
    type: 'urn:easel:problem:internal_error',
    title: 'Internal server error',
    status: 500,
    detail: 'An unexpected error occurred.',
    code: 'internal_error',
    instance: `/v1/generations/${id}`,
    request_id: 'boom-1',
  });
  const logged = api.logs.find((l) => l.msg === UNHANDLED_ERROR && l.request_id === 'boom-1');
  assert.ok(logged, 'the error is logged with the request id');
  assert.match(String((logged.err as { stack?: string }).stack), /secret internal detail/);
});

// Last: it stops this file's S3 server.
test('GET /readyz is 503 naming object_store when the S3 server is down; /healthz stays 200', async () => {
  await api.s3.stop();
  const res = await fetch(`${api.url}/readyz`);
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  const body = (await res.json()) as { code: string; detail: string; checks: Record<string, string> };
  assert.equal(body.code, 'service_unavailable');
  assert.equal(body.checks.database, 'ok');
  assert.notEqual(body.checks.object_store, 'ok');
  assert.match(body.detail, /object_store/);
  assert.equal((await fetch(`${api.url}/healthz`)).status, 200);
});
