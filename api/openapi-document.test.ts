// Walks the generated OpenAPI document and holds every operation to the same rules, so a route
// added later cannot forget a status it can answer, a required path parameter or a valid example.
// (The document's conformance to the real responses is checked by testing.ts on every API test.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { ERROR_CATALOGUE, type ErrorCode, problemType } from './errors.ts';
import {
  createResponseValidator,
  createSchemaValidator,
  jsonPointer,
  type OpenApiDocument,
} from './openapi-conformance.ts';
import { renderOpenApiYaml } from './openapi-export.ts';

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: { type?: string | string[]; $ref?: string };
}
interface Media {
  schema?: { $ref?: string; [keyword: string]: unknown };
  example?: unknown;
  examples?: Record<string, { value: unknown }>;
}
interface Response {
  headers?: Record<string, unknown>;
  content?: Record<string, Media>;
}
interface Operation {
  operationId?: string;
  tags?: string[];
  summary?: string;
  security?: Array<Record<string, string[]>>;
  parameters?: Parameter[];
  requestBody?: { content: Record<string, Media> };
  responses: Record<string, Response>;
}

const generated = parse(renderOpenApiYaml()) as OpenApiDocument;
const document = generated as unknown as {
  servers?: Array<{ url: string }>;
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, { example?: unknown }> };
};
const operations = Object.entries(document.paths).flatMap(([path, item]) =>
  Object.entries(item).map(([method, operation]) => ({
    path,
    method,
    operation,
    name: `${method.toUpperCase()} ${path}`,
  })),
);
const checkSchema = createSchemaValidator(generated);

test('the document names where the API is', () => {
  assert.ok(document.servers?.length, 'servers');
});

test('every operation has an id, a tag, a summary and a success or redirect response', () => {
  const ids = operations.map(({ operation }) => operation.operationId);
  assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
  for (const { name, operation } of operations) {
    assert.ok(operation.operationId && operation.tags?.length && operation.summary, name);
    assert.ok(
      Object.keys(operation.responses).some((status) => /^[23]/.test(status)),
      `${name} has a 2XX or 3XX`,
    );
  }
});

test('every operation states its security; every authenticated one documents 401 with WWW-Authenticate', () => {
  for (const { name, operation } of operations) {
    assert.ok(Array.isArray(operation.security), `${name} has security (\`[]\` when none applies)`);
    if (operation.security?.length === 0) continue;
    const unauthorized = operation.responses['401'];
    assert.ok(unauthorized, `${name} documents 401`);
    assert.ok(unauthorized.headers?.['WWW-Authenticate'], `${name} 401 documents WWW-Authenticate`);
  }
});

test('every operation that may be sent a body documents 413; one that takes a body, 400, 415 and 422', () => {
  for (const { name, method, operation } of operations) {
    // The body limit applies to every request before routing, a POST without a body included.
    if (['post', 'put', 'patch'].includes(method))
      assert.ok(operation.responses['413'], `${name} documents 413`);
    if (!operation.requestBody) continue;
    for (const status of ['400', '413', '415', '422']) {
      assert.ok(operation.responses[status], `${name} takes a body and documents ${status}`);
    }
  }
});

test('path parameters are required and never null; parameters that can be malformed document 404 or 422', () => {
  for (const { name, path, operation } of operations) {
    const parameters = operation.parameters ?? [];
    const inPath = parameters.filter((p) => p.in === 'path');
    const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    assert.deepEqual(inPath.map((p) => p.name).sort(), templated.sort(), `${name}: one parameter per {name}`);
    for (const parameter of inPath) {
      assert.equal(parameter.required, true, `${name} ${parameter.name} is required`);
      const types = [parameter.schema?.type].flat();
      assert.ok(!types.includes('null'), `${name} ${parameter.name} is not nullable`);
    }
    // A path id that names nothing is 404; any other malformed parameter is 422 naming it.
    if (inPath.length > 0) assert.ok(operation.responses['404'], `${name} documents 404`);
    const validated = parameters.filter((p) => p.in === 'query' || (p.in === 'path' && p.name !== 'id'));
    if (validated.length > 0) assert.ok(operation.responses['422'], `${name} documents 422`);
  }
});

test('every /v1 operation documents 500 and 503 with Retry-After', () => {
  for (const { name, operation } of operations.filter(({ path }) => path.startsWith('/v1/'))) {
    assert.ok(operation.responses['500'], `${name} documents 500`);
    assert.ok(operation.responses['503']?.headers?.['Retry-After'], `${name} documents 503 with Retry-After`);
  }
});

test('every error response is problem+json, and each example is the problem its status and code render', () => {
  for (const { name, operation } of operations) {
    for (const [status, response] of Object.entries(operation.responses).filter(([s]) => Number(s) >= 400)) {
      assert.deepEqual(
        Object.keys(response.content ?? {}),
        ['application/problem+json'],
        `${name} ${status}`,
      );
      const media = response.content?.['application/problem+json'] as Media;
      const examples = [
        ...(media.example === undefined ? [] : [media.example]),
        ...Object.values(media.examples ?? {}).map((e) => e.value),
      ] as Array<{ type: string; status: number; code: ErrorCode; title: string }>;
      assert.ok(examples.length > 0, `${name} ${status} has an example`);
      for (const example of examples) {
        assert.equal(example.status, Number(status), `${name} ${status} example status`);
        assert.equal(
          ERROR_CATALOGUE[example.code]?.status,
          Number(status),
          `${name} ${status} ${example.code}`,
        );
        assert.equal(example.type, problemType(example.code));
        assert.equal(example.title, ERROR_CATALOGUE[example.code].title);
      }
    }
  }
});

test('every example in the document matches its schema', () => {
  let checked = 0;
  for (const { name, path, method, operation } of operations) {
    for (const [status, response] of Object.entries(operation.responses)) {
      for (const [type, media] of Object.entries(response.content ?? {})) {
        if (!media.schema) continue;
        const pointer = jsonPointer('paths', path, method, 'responses', status, 'content', type, 'schema');
        const values = [
          ...(media.example === undefined ? [] : [media.example]),
          ...Object.values(media.examples ?? {}).map((e) => e.value),
        ];
        for (const value of values) {
          assert.equal(checkSchema(pointer, value, 'example'), undefined, `${name} ${status} ${type}`);
          checked++;
        }
      }
    }
  }
  for (const [schema, { example }] of Object.entries(document.components.schemas)) {
    if (example === undefined) continue;
    assert.equal(
      checkSchema(jsonPointer('components', 'schemas', schema), example, 'example'),
      undefined,
      schema,
    );
    checked++;
  }
  assert.ok(checked > 20, `${checked} examples checked`);
});

test('the response validator the API tests use catches drift', () => {
  const check = createResponseValidator(generated, { undocumented: ['/metrics'] });
  const headers = (contentType: string, more: Record<string, string> = {}) =>
    new Headers({ 'content-type': contentType, ...more });
  const problem = (status: number, code: string) =>
    JSON.stringify({
      type: `urn:easel:problem:${code}`,
      title: 'A title',
      status,
      detail: 'A detail.',
      code,
      instance: '/x',
      request_id: 'r',
    });
  const live = { method: 'GET', path: '/healthz', status: 200, headers: headers('application/json') };
  assert.deepEqual(check({ ...live, body: '{"status":"ok"}' }), []);
  assert.match(check({ ...live, body: '{"status":"fine"}' }).join(), /does not match .*liveness/);
  assert.match(check({ ...live, status: 204, body: '' }).join(), /documents no 204 response/);
  assert.match(
    check({ ...live, headers: headers('text/plain'), body: 'ok' }).join(),
    /text\/plain is not documented/,
  );
  const missing = {
    method: 'GET',
    path: '/v1/generations/x',
    status: 404,
    headers: headers('application/problem+json'),
  };
  assert.deepEqual(check({ ...missing, body: problem(404, 'not_found') }), []);
  assert.match(check({ ...missing, body: problem(410, 'not_found') }).join(), /says status 410/);
  assert.match(check({ ...missing, body: problem(404, 'gone') }).join(), /code must be equal to one of/);
  const wrongMethod = {
    method: 'DELETE',
    path: '/healthz',
    status: 405,
    body: problem(405, 'method_not_allowed'),
  };
  assert.deepEqual(
    check({ ...wrongMethod, headers: headers('application/problem+json', { allow: 'GET, HEAD' }) }),
    [],
  );
  assert.match(
    check({ ...wrongMethod, headers: headers('application/problem+json', { allow: 'GET' }) }).join(),
    /Allow/,
  );
  const nowhere = { method: 'GET', path: '/v2', headers: headers('application/problem+json') };
  assert.match(check({ ...nowhere, status: 200, body: problem(200, 'not_found') }).join(), /must answer 404/);
  const busy = { method: 'POST', path: '/v1/generations', status: 503, body: problem(503, 'queue_full') };
  assert.match(
    check({ ...busy, headers: headers('application/problem+json', { 'retry-after': 'soon' }) }).join(),
    /Retry-After: soon: value must be integer/,
  );
  assert.deepEqual(
    check({ method: 'POST', path: '/metrics', status: 200, headers: headers('text/plain'), body: '' }),
    [],
  );
});
