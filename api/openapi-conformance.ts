// Test support (not a test file): checks a real response against openapi.yaml, the document SDKs
// are generated from: the operation (method + path template), that it documents the status, the
// content type, the body against its schema and the documented headers. testing.ts runs every
// response the API tests receive through it, so the document and the service cannot drift apart.
//
// Schemas are checked by Ajv's JSON Schema 2020-12 validator, the dialect OpenAPI 3.1 uses.
// The OpenAPI part (finding the operation and response) is done here: the maintained OpenAPI
// response validators on npm are bound to Express or Koa, check only application/json bodies
// (not problem+json), or stop at OpenAPI 3.0.
import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { parse } from 'yaml';

// ajv-formats is CommonJS: under Node's ESM loader its default import is module.exports, which
// carries the plugin as `default` too.
const addFormats = addFormatsModule.default;

interface JsonSchema {
  type?: string | string[];
  [keyword: string]: unknown;
}

interface MediaTypeObject {
  schema?: JsonSchema;
}

interface ResponseObject {
  description: string;
  headers?: Record<string, { required?: boolean; schema?: JsonSchema }>;
  content?: Record<string, MediaTypeObject>;
}

interface OperationObject {
  operationId?: string;
  responses: Record<string, ResponseObject>;
}

type PathItem = Partial<Record<(typeof METHODS)[number], OperationObject>>;

export interface OpenApiDocument {
  openapi: string;
  paths: Record<string, PathItem>;
  components?: { schemas?: Record<string, JsonSchema> };
  [member: string]: unknown;
}

/** A response as the client received it. */
export interface ObservedResponse {
  method: string;
  /** The request URL's path (no query). */
  path: string;
  status: number;
  headers: Headers;
  /** The body as text; '' when there is none. */
  body: string;
}

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
const DOCUMENT_ID = 'openapi.yaml';

export function loadOpenApiDocument(file = new URL('../openapi.yaml', import.meta.url)): OpenApiDocument {
  return parse(readFileSync(file, 'utf8')) as OpenApiDocument;
}

/** A JSON Pointer segment (RFC 6901), then URI-fragment safe. */
function pointerSegment(segment: string): string {
  return encodeURIComponent(segment.replaceAll('~', '~0').replaceAll('/', '~1'));
}

function templatePattern(template: string): RegExp {
  const source = template
    .split('/')
    .map((segment) =>
      /^\{[^}]+\}$/.test(segment) ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${source}$`);
}

function isJson(mediaType: string): boolean {
  return mediaType === 'application/json' || mediaType.endsWith('+json');
}

/** Header values are strings; a header schema describes the value they spell. */
function headerValue(value: string, schema: JsonSchema): unknown {
  const types = [schema.type].flat();
  if ((types.includes('integer') || types.includes('number')) && /^-?\d+(\.\d+)?$/.test(value)) {
    return Number(value);
  }
  if (types.includes('boolean') && (value === 'true' || value === 'false')) return value === 'true';
  return value;
}

export interface ResponseValidatorOptions {
  /** Paths served on purpose outside the document (metrics, the document itself, the docs page). */
  undocumented?: Array<string | RegExp>;
}

/**
 * Validates a value against the schema at a JSON Pointer into the document (its `$ref`s resolved
 * in the document): undefined when it matches, else Ajv's errors as one line.
 */
export function createSchemaValidator(
  document: OpenApiDocument,
): (pointer: string, value: unknown, name?: string) => string | undefined {
  // strict: false, because OpenAPI adds keywords of its own to schemas (example, discriminator).
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema(document, DOCUMENT_ID);
  const compiled = new Map<string, ValidateFunction>();
  return (pointer, value, name = 'body') => {
    let validate = compiled.get(pointer);
    if (!validate) {
      validate = ajv.compile({ $ref: `${DOCUMENT_ID}#${pointer}` });
      compiled.set(pointer, validate);
    }
    if (validate(value)) return undefined;
    return ajv.errorsText(validate.errors, { dataVar: name, separator: '; ' });
  };
}

/** A JSON Pointer (RFC 6901) from its segments, each made URI-fragment safe. */
export function jsonPointer(...segments: string[]): string {
  return segments.map((segment) => `/${pointerSegment(segment)}`).join('');
}

/** Returns a checker: the ways a response breaks the document, [] when it conforms. */
export function createResponseValidator(
  document: OpenApiDocument,
  options: ResponseValidatorOptions = {},
): (response: ObservedResponse) => string[] {
  const schemaErrors = createSchemaValidator(document);

  const routes = Object.entries(document.paths).map(([template, item]) => ({
    template,
    item,
    pattern: templatePattern(template),
    // OpenAPI: a concrete path matches before a templated one.
    literals: template.split('/').filter((segment) => !segment.startsWith('{')).length,
  }));
  const findRoute = (path: string) =>
    routes.filter((route) => route.pattern.test(path)).sort((a, b) => b.literals - a.literals)[0];

  const problemSchema = document.components?.schemas?.Problem ? '/components/schemas/Problem' : undefined;

  /** A response no operation documents (404 for an unknown path, 405 for a wrong method). */
  function checkProblem(response: ObservedResponse, what: string): string[] {
    const found: string[] = [];
    const mediaType = response.headers.get('content-type')?.split(';')[0]?.trim().toLowerCase() ?? '';
    if (response.status < 400) found.push(`${what} answered ${response.status}, not an error`);
    if (response.method === 'HEAD') return found;
    if (mediaType !== 'application/problem+json') {
      found.push(`${what} answered ${mediaType || 'no Content-Type'}, not application/problem+json`);
      return found;
    }
    let body: unknown;
    try {
      body = JSON.parse(response.body);
    } catch {
      return [...found, `${what}: the body is not JSON`];
    }
    const error = problemSchema && schemaErrors(problemSchema, body);
    if (error) found.push(`${what}: the body does not match Problem: ${error}`);
    return found;
  }

  return (response) => {
    const { path } = response;
    const name = `${response.method} ${path} → ${response.status}`;
    if (options.undocumented?.some((p) => (typeof p === 'string' ? p === path : p.test(path)))) return [];

    const route = findRoute(path);
    if (!route) {
      const found = checkProblem(response, `${name} (no documented path)`);
      if (response.status !== 404) found.push(`${name}: an undocumented path must answer 404`);
      return found;
    }
    const method = response.method.toLowerCase() as (typeof METHODS)[number];
    // HEAD is GET without the body, unless the document has a HEAD operation of its own.
    const operationMethod = method === 'head' && !route.item.head ? 'get' : method;
    const operation = route.item[operationMethod];
    if (!operation) {
      const found = checkProblem(response, `${name} (${route.template} documents no ${response.method})`);
      if (response.status === 405) {
        const documented = METHODS.filter((m) => route.item[m]).map((m) => m.toUpperCase());
        if (documented.includes('GET') && !documented.includes('HEAD')) documented.push('HEAD');
        const allow = (response.headers.get('allow') ?? '').split(',').map((m) => m.trim().toUpperCase());
        if ([...allow].sort().join() !== [...documented].sort().join()) {
          found.push(`${name}: Allow is "${response.headers.get('allow')}", the document has ${documented}`);
        }
      }
      return found;
    }

    const operationName = `${response.method} ${route.template} (${operation.operationId ?? 'no operationId'})`;
    const status = String(response.status);
    const statusKey = [status, `${status[0]}XX`, 'default'].find((key) => operation.responses[key]);
    if (!statusKey) {
      return [
        `${name}: ${operationName} documents no ${status} response (it documents ${Object.keys(operation.responses).join(', ')})`,
      ];
    }
    const documented = operation.responses[statusKey] as ResponseObject;
    const at = `/paths/${pointerSegment(route.template)}/${operationMethod}/responses/${pointerSegment(statusKey)}`;
    const found: string[] = [];

    for (const [header, spec] of Object.entries(documented.headers ?? {})) {
      const value = response.headers.get(header);
      if (value === null) {
        if (spec.required) found.push(`${name}: the required header ${header} is missing`);
        continue;
      }
      if (!spec.schema) continue;
      const error = schemaErrors(
        `${at}/headers/${pointerSegment(header)}/schema`,
        headerValue(value, spec.schema),
        'value',
      );
      if (error) found.push(`${name}: header ${header}: ${value}: ${error}`);
    }

    if (response.method === 'HEAD') return found;
    const mediaType = response.headers.get('content-type')?.split(';')[0]?.trim().toLowerCase() ?? '';
    const content = documented.content ?? {};
    if (Object.keys(content).length === 0) {
      if (response.body !== '') found.push(`${name}: has a body, the document says it has none`);
      return found;
    }
    const media = content[mediaType];
    if (!media) {
      found.push(
        `${name}: Content-Type ${mediaType || '(none)'} is not documented (documented: ${Object.keys(content).join(', ')})`,
      );
      return found;
    }
    if (!media.schema) return found;
    if (!isJson(mediaType)) return found;
    let body: unknown;
    try {
      body = JSON.parse(response.body);
    } catch {
      return [...found, `${name}: the ${mediaType} body is not JSON`];
    }
    const error = schemaErrors(`${at}/content/${pointerSegment(mediaType)}/schema`, body);
    if (error)
      found.push(`${name}: the body does not match ${operationName}'s ${statusKey} schema: ${error}`);
    if (mediaType === 'application/problem+json') {
      const problemStatus = (body as { status?: unknown }).status;
      if (problemStatus !== response.status) {
        found.push(`${name}: the problem document says status ${String(problemStatus)}`);
      }
    }
    return found;
  };
}
