// Liveness says the process answers; readiness says its dependencies answer too, so a load
// balancer stops routing here while Postgres or the object store is unreachable.
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { ObjectStore } from '../shared/object-store.ts';
import type { AppEnv } from './context.ts';
import { apiError } from './errors.ts';
import { Problem } from './generations.schemas.ts';

export const READINESS_TIMEOUT_MS = 1000;

const Liveness = z.object({ status: z.literal('ok') }).openapi('Liveness');

const CheckResult = z.string().openapi({ description: '`ok`, or why the check failed.', example: 'ok' });
const Checks = z.object({ database: CheckResult, object_store: CheckResult });
const Readiness = z.object({ status: z.literal('ready'), checks: Checks }).openapi('Readiness');
const NotReady = Problem.extend({ checks: Checks }).openapi('NotReady', {
  description: 'A problem document listing every check.',
});

export const livenessRoute = createRoute({
  method: 'get',
  path: '/healthz',
  operationId: 'liveness',
  tags: ['Health'],
  summary: 'Liveness: the process is up',
  description: 'Touches no dependency.',
  // Probes need no API key: the empty list says so (no security requirement applies).
  security: [],
  responses: {
    200: { description: 'Alive.', content: { 'application/json': { schema: Liveness } } },
  },
});

export const readinessRoute = createRoute({
  method: 'get',
  path: '/readyz',
  operationId: 'readiness',
  tags: ['Health'],
  summary: 'Readiness: Postgres and the object store answer',
  description: `Each check must answer within ${READINESS_TIMEOUT_MS} ms.`,
  security: [],
  responses: {
    200: { description: 'Ready.', content: { 'application/json': { schema: Readiness } } },
    503: {
      description: 'A dependency is unreachable; `checks` says which.',
      content: {
        'application/problem+json': {
          schema: NotReady,
          example: {
            type: 'urn:easel:problem:service_unavailable',
            title: 'Service temporarily unavailable',
            status: 503,
            detail: 'Not ready: object_store.',
            code: 'service_unavailable',
            instance: '/readyz',
            request_id: 'f1c2a3b4-5d6e-4f70-8a9b-0c1d2e3f4a5b',
            checks: {
              database: 'ok',
              object_store: 'object store check of bucket easel failed: ECONNREFUSED',
            },
          },
        },
      },
    },
  },
});

async function check(probe: () => Promise<unknown>): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no answer within ${READINESS_TIMEOUT_MS} ms`)),
      READINESS_TIMEOUT_MS,
    );
  });
  try {
    await Promise.race([probe(), timeout]);
    return 'ok';
  } catch (error) {
    return error instanceof Error ? error.message || error.name : String(error);
  } finally {
    clearTimeout(timer);
  }
}

export function registerHealthRoutes(app: OpenAPIHono<AppEnv>, deps: { db: Db; store: ObjectStore }) {
  app.openapi(livenessRoute, (c) => c.json({ status: 'ok' as const }, 200));

  app.openapi(readinessRoute, async (c) => {
    const [database, objectStore] = await Promise.all([
      check(() => sql`select 1`.execute(deps.db)),
      check(() => deps.store.ping()),
    ]);
    const checks = { database, object_store: objectStore };
    if (database === 'ok' && objectStore === 'ok') return c.json({ status: 'ready' as const, checks }, 200);
    const failed = Object.entries(checks)
      .filter(([, result]) => result !== 'ok')
      .map(([name]) => name);
    // onError renders it (and logs it) like every other problem.
    throw apiError('service_unavailable', `Not ready: ${failed.join(', ')}.`, { members: { checks } });
  });
}
