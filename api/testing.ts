// Test support (not a test file): the real app over real HTTP on an ephemeral port, backed by
// this test file's own Postgres database and a real S3-compatible server process.
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { serve } from '@hono/node-server';
import type { PgBoss } from 'pg-boss';
import { pino } from 'pino';
import { createApiKey } from '../db/api-keys.repository.ts';
import { createBoss, ensureGenerationQueue } from '../db/queue.ts';
import { createS3ObjectStore, type ObjectStore } from '../shared/object-store.ts';
import { createTestDatabase, type TestDatabase } from '../test/harness/database.ts';
import { registerDemoModel } from '../test/harness/models.ts';
import { type S3ServerProcess, startS3ServerProcess } from '../test/harness/s3-server.ts';
import { type AppDeps, createApp } from './app.ts';
import { type ApiConfig, loadApiConfig, publicS3Settings } from './config.ts';
import { createResponseValidator, loadOpenApiDocument } from './openapi-conformance.ts';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface TestApi {
  url: string;
  t: TestDatabase;
  s3: S3ServerProcess;
  store: ObjectStore;
  boss: PgBoss;
  config: ApiConfig;
  /** Every JSON line the app logged, parsed. */
  logs: LogLine[];
  newKey(name?: string): Promise<{ id: string; key: string }>;
  /**
   * Every way a response the app served broke openapi.yaml (undocumented status, content type,
   * body or header not matching its schema). close() fails when there is any.
   */
  openapiViolations: string[];
  /** Serves another app on the same database and store, with some dependencies swapped. */
  serveVariant(overrides: Partial<AppDeps>): Promise<{ url: string; close(): Promise<void> }>;
  close(): Promise<void>;
}

function captureLogger(logs: LogLine[]) {
  const sink = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return pino({ level: 'info' }, sink);
}

// Served on purpose outside the document: Prometheus, the document itself and its docs page.
const UNDOCUMENTED_PATHS = ['/metrics', '/openapi.json', '/docs'];

let checkResponse: ReturnType<typeof createResponseValidator> | undefined;

/**
 * Checks each response against openapi.yaml as it leaves the app, so every request a test makes
 * (through call() or a plain fetch) is covered; what breaks the document lands in `violations`.
 */
function conformingFetch(app: ReturnType<typeof createApp>, violations: string[]) {
  checkResponse ??= createResponseValidator(loadOpenApiDocument(), { undocumented: UNDOCUMENTED_PATHS });
  const check = checkResponse;
  return async (request: Request, env: unknown): Promise<Response> => {
    const response = await app.fetch(request, env);
    const path = new URL(request.url).pathname;
    const contentType = response.headers.get('content-type') ?? '';
    // A stream's body never ends: its status and headers are checked, not the body.
    const streaming = contentType.startsWith('text/event-stream');
    const body =
      response.body && !streaming && !UNDOCUMENTED_PATHS.includes(path) ? await response.clone().text() : '';
    const found = check({
      method: request.method,
      path,
      status: response.status,
      headers: response.headers,
      body,
    });
    for (const violation of found) {
      violations.push(violation);
      process.stderr.write(`openapi.yaml violation: ${violation}\n`);
    }
    return response;
  };
}

async function listen(deps: AppDeps, violations: string[]) {
  const app = createApp(deps);
  const fetch = conformingFetch(app, violations);
  const { server, port } = await new Promise<{ server: ReturnType<typeof serve>; port: number }>(
    (resolve) => {
      const server = serve({ fetch, hostname: '127.0.0.1', port: 0 }, (info: AddressInfo) =>
        resolve({ server, port: info.port }),
      );
    },
  );
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        if ('closeAllConnections' in server) server.closeAllConnections();
      }),
  };
}

export async function startTestApi(label: string, env: Record<string, string> = {}): Promise<TestApi> {
  const t = await createTestDatabase(label);
  const s3 = await startS3ServerProcess();
  const config = loadApiConfig({
    DATABASE_URL: t.url,
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: 'easel-api-test',
    PORT: '0',
    ...env,
  });
  const store = createS3ObjectStore(publicS3Settings(config));
  await store.ensureBucket();
  const boss = createBoss(t.url, { supervise: false, applicationName: 'easel-api-test', max: 2 });
  await boss.start();
  await ensureGenerationQueue(boss, null);
  // Creates need a model: the demo model, as its worker would announce it (no worker runs here).
  await registerDemoModel(t.db);
  const logs: LogLine[] = [];
  const deps: AppDeps = { db: t.db, boss, store, config, logger: captureLogger(logs) };
  const openapiViolations: string[] = [];
  const main = await listen(deps, openapiViolations);
  const variants: Array<() => Promise<void>> = [];

  return {
    url: main.url,
    t,
    s3,
    store,
    boss,
    config,
    logs,
    openapiViolations,
    async newKey(name = 'test') {
      const { apiKey, key } = await createApiKey(t.db, { name });
      return { id: apiKey.id, key };
    },
    async serveVariant(overrides) {
      const variant = await listen({ ...deps, ...overrides }, openapiViolations);
      variants.push(variant.close);
      return variant;
    },
    async close() {
      for (const closeVariant of variants) await closeVariant();
      await main.close();
      await boss.stop({ graceful: false, close: true });
      store.close();
      await s3.stop();
      await t.drop();
      if (openapiViolations.length > 0) {
        throw new Error(
          `${openapiViolations.length} response(s) did not match openapi.yaml:\n${openapiViolations.join('\n')}`,
        );
      }
    },
  };
}

/** fetch with a bearer key and a JSON body. */
export function call(
  url: string,
  init: {
    method?: string;
    key?: string;
    json?: unknown;
    body?: RequestInit['body'];
    headers?: Record<string, string>;
  } = {},
) {
  const headers: Record<string, string> = { ...init.headers };
  if (init.key) headers.Authorization = `Bearer ${init.key}`;
  let body = init.body;
  if (init.json !== undefined) {
    body = JSON.stringify(init.json);
    headers['Content-Type'] ??= 'application/json';
  }
  return fetch(url, { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers, body });
}

/**
 * The app with no database, queue or storage behind it, for pages the API serves from files
 * (`/docs`, the wall at `/`): any use of those services fails the test, naming `what` touched it.
 */
export function createServicelessApp(what: string) {
  const inert = <T>(name: string): T =>
    new Proxy({} as object, {
      get(_, property) {
        throw new Error(`${what} touched ${name}.${String(property)}`);
      },
    }) as T;
  return createApp({
    db: inert<AppDeps['db']>('db'),
    boss: inert<PgBoss>('boss'),
    store: inert<ObjectStore>('store'),
    config: loadApiConfig({ DATABASE_URL: 'postgres://localhost/easel' }),
    logger: pino({ level: 'silent' }),
  });
}
