import { createRoute } from '@hono/zod-openapi';
import { requireAdmin } from './auth.ts';
import {
  internalErrorResponse,
  problemResponse,
  unauthorizedResponse,
  unavailableResponse,
} from './responses.ts';
import { ListWorkersQuery, WorkerList } from './workers.schemas.ts';

const security = [{ bearerAuth: [] }];
const WORKERS = '/v1/workers';

export const listWorkersRoute = createRoute({
  method: 'get',
  path: '/v1/workers',
  operationId: 'listWorkers',
  tags: ['Operations'],
  summary: 'The GPU workers serving the queue (admin keys only)',
  description:
    'Every worker process registers at start and heartbeats while it runs: which model and execution ' +
    'provider it serves, the generation it is running and its job counts. By default only live ' +
    'workers are listed; `include_stale=true` adds stopped and silent ones. Needs an admin key ' +
    '(`easel keys create --admin`); other keys get 403 `forbidden`.',
  security,
  middleware: [requireAdmin] as const,
  request: { query: ListWorkersQuery },
  responses: {
    200: { description: 'The workers.', content: { 'application/json': { schema: WorkerList } } },
    401: unauthorizedResponse(WORKERS),
    403: problemResponse('The key is not an admin key.', WORKERS, {
      code: 'forbidden',
      detail: 'This endpoint needs an admin API key (easel keys create --admin).',
    }),
    422: problemResponse('A query parameter is invalid; `errors` names it.', WORKERS, {
      code: 'validation_failed',
      detail: 'The request query has 1 invalid field.',
      errors: [{ field: 'include_stale', message: 'must be true or false' }],
    }),
    500: internalErrorResponse(WORKERS),
    503: unavailableResponse(WORKERS, 'The database is unreachable; retry later.'),
  },
});
