// HTTP behaviour that holds for every route, driven by openapi.yaml so that a route added later is
// covered too: 405 with Allow for a known path's other methods, decimal digits only for integer
// parameters, 413 for an oversized body on every operation that may be sent one.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createApiKey } from '../db/api-keys.repository.ts';
import { loadOpenApiDocument } from './openapi-conformance.ts';
import { call, startTestApi, type TestApi } from './testing.ts';

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: { type?: string | string[] };
}
type Operation = { operationId: string; parameters?: Parameter[]; responses: Record<string, unknown> };

const BODY_LIMIT = 1024;
const document = loadOpenApiDocument();
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
const operations = Object.entries(document.paths).flatMap(([template, item]) =>
  Object.entries(item as Record<string, Operation>).map(([method, operation]) => ({
    template,
    method: method.toUpperCase(),
    operation,
  })),
);

let api: TestApi;
/** An admin key, so admin-only routes get as far as validation too. */
let key: string;

before(async () => {
  api = await startTestApi('api_protocol', { BODY_LIMIT_BYTES: String(BODY_LIMIT) });
  key = (await createApiKey(api.t.db, { name: 'operator', admin: true })).key;
});
after(async () => {
  await api?.close();
});

/** The template with every parameter filled with a well-formed value (ids that name nothing). */
function fill(template: string, values: Record<string, string> = {}): string {
  return template.replace(/\{([^}]+)\}/g, (_, name: string) =>
    encodeURIComponent(values[name] ?? (name === 'id' ? randomUUID() : '0')),
  );
}

function isInteger(parameter: Parameter): boolean {
  return [parameter.schema?.type].flat().includes('integer');
}

test('a known path asked with a method it does not answer is 405 problem+json with Allow', async () => {
  const checked: string[] = [];
  for (const [template, item] of Object.entries(document.paths)) {
    const documented = Object.keys(item).map((m) => m.toUpperCase());
    const allow = METHODS.filter(
      (m) => documented.includes(m) || (m === 'HEAD' && documented.includes('GET')),
    );
    for (const method of METHODS.filter((m) => !allow.includes(m))) {
      const res = await call(`${api.url}${fill(template)}`, { method, key });
      assert.equal(res.status, 405, `${method} ${template}`);
      assert.equal(res.headers.get('allow'), allow.join(', '), `${method} ${template}`);
      assert.equal(res.headers.get('content-type'), 'application/problem+json');
      checked.push(`${method} ${template}`);
      if (method === 'HEAD') continue; // no body
      const problem = (await res.json()) as { code: string; status: number; detail: string };
      assert.equal(problem.code, 'method_not_allowed');
      assert.equal(problem.status, 405);
    }
  }
  assert.ok(checked.includes('DELETE /healthz') && checked.includes('GET /v1/generations/{id}/cancel'));
  // Outside the document too: every route the app serves.
  const metrics = await call(`${api.url}/metrics`, { method: 'POST', key });
  assert.equal(metrics.status, 405);
  assert.equal(metrics.headers.get('allow'), 'GET, HEAD');
  // HEAD is answered wherever GET is.
  assert.equal((await fetch(`${api.url}/healthz`, { method: 'HEAD' })).status, 200);
  // An unknown path stays 404, whatever the method.
  assert.equal((await call(`${api.url}/v1/nothing`, { method: 'DELETE', key })).status, 404);
});

test('every integer query or path parameter takes decimal digits only: 422 naming it', async () => {
  const integers = operations.flatMap(({ template, method, operation }) =>
    (operation.parameters ?? [])
      .filter((p) => isInteger(p) && (p.in === 'query' || p.in === 'path'))
      .map((parameter) => ({ template, method, parameter })),
  );
  assert.ok(integers.some(({ parameter }) => parameter.name === 'limit'));
  assert.ok(integers.some(({ parameter }) => parameter.name === 'index'));
  for (const { template, method, parameter } of integers) {
    // Number() or parseInt() makes a number of each; none is decimal digits.
    for (const bad of ['0x10', '1e1', '1.0', ' 1', '1 ', '+1', '-1', '0b1', 'Infinity', '']) {
      if (bad === '' && parameter.in === 'path') continue; // an empty segment is another route
      const path = parameter.in === 'path' ? fill(template, { [parameter.name]: bad }) : fill(template);
      const query = parameter.in === 'query' ? `?${parameter.name}=${encodeURIComponent(bad)}` : '';
      const res = await call(`${api.url}${path}${query}`, { method, key });
      const what = `${method} ${template} ${parameter.name}=${JSON.stringify(bad)}`;
      assert.equal(res.status, 422, what);
      const problem = (await res.json()) as { code: string; errors: Array<{ field: string }> };
      assert.equal(problem.code, 'validation_failed', what);
      assert.deepEqual(
        problem.errors.map((e) => e.field),
        [parameter.name],
        what,
      );
    }
    // Path integers are documented as required integers, so SDKs type them as numbers.
    if (parameter.in === 'path') assert.equal(parameter.required, true, `${template} ${parameter.name}`);
  }
  // Digits are digits, leading zeros included.
  const page = await call(`${api.url}/v1/generations?limit=010`, { key });
  assert.equal(page.status, 200);
});

test('a body over the limit is 413 on every operation that may be sent one, documented there', async () => {
  const posts = operations.filter(({ method }) => ['POST', 'PUT', 'PATCH'].includes(method));
  assert.ok(posts.length >= 3, 'create, cancel and redeliver at least');
  for (const { template, method, operation } of posts) {
    const res = await call(`${api.url}${fill(template)}`, {
      method,
      key,
      json: { padding: 'x'.repeat(BODY_LIMIT) },
    });
    assert.equal(res.status, 413, `${method} ${template}`);
    assert.equal(((await res.json()) as { code: string }).code, 'payload_too_large');
    assert.ok(operation.responses['413'], `${operation.operationId} documents 413`);
  }
});
