// Liveness says the process answers; readiness says its dependencies answer too, so a load
// balancer stops routing here while Postgres or the object store is unreachable. /readyz has the
// shape every process answers it in (shared/readiness.ts), documented here for the API's checks.
import { createRoute, type OpenAPIHono, z } from '@hono/zod-openapi';
import { sql } from 'kysely';
import type { Db } from '../db/connect.ts';
import type { ObjectStore } from '../shared/object-store.ts';
import {
  CheckResult,
  notReadyDetail,
  READINESS_CHECK_TIMEOUT_MS,
  readyBodySchema,
  runCheck,
} from '../shared/readiness.ts';
import type { AppEnv } from './context.ts';
import { apiError, Problem } from './errors.ts';

const Liveness = z.object({ status: z.literal('ok') }).openapi('Liveness');

const Check = CheckResult.openapi({ description: '`ok`, or why the check failed.', example: 'ok' });
const Checks = z.object({ database: Check, object_store: Check });
const Readiness = readyBodySchema(Checks).openapi('Readiness');
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
  description: `Each check must answer within ${READINESS_CHECK_TIMEOUT_MS} ms.`,
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

export function registerHealthRoutes(app: OpenAPIHono<AppEnv>, deps: { db: Db; store: ObjectStore }) {
  app.openapi(livenessRoute, (c) => c.json({ status: 'ok' as const }, 200));

  app.openapi(readinessRoute, async (c) => {
    const [database, objectStore] = await Promise.all([
      runCheck(() => sql`select 1`.execute(deps.db)),
      runCheck(() => deps.store.ping()),
    ]);
    const checks = { database, object_store: objectStore };
    if (database === 'ok' && objectStore === 'ok') return c.json({ status: 'ready' as const, checks }, 200);
    // onError renders it (and logs it) like every other problem.
    throw apiError('service_unavailable', notReadyDetail(checks), { members: { checks } });
  });
}
