import { createRoute } from '@hono/zod-openapi';
import { ListModelsQuery, Model, ModelIdParams, ModelList } from './models.schemas.ts';
import {
  internalErrorResponse,
  problemResponse,
  unauthorizedResponse,
  unavailableResponse,
} from './responses.ts';

const security = [{ bearerAuth: [] }];
const MODELS = '/v1/models';
const MODEL = '/v1/models/sd15';

export const listModelsRoute = createRoute({
  method: 'get',
  path: '/v1/models',
  operationId: 'listModels',
  tags: ['Models'],
  summary: 'The models a generation may name',
  description:
    'Every model the fleet serves: what each can be asked for (`capabilities`), what a request that ' +
    'leaves a parameter out gets (`defaults`), and whether a worker holds it warm now (`status`, ' +
    '`live_workers`) with its queue. A model with no live worker still takes generations; they wait ' +
    'until one starts. Retired models are left out unless `include_retired=true`.',
  security,
  request: { query: ListModelsQuery },
  responses: {
    200: { description: 'The models.', content: { 'application/json': { schema: ModelList } } },
    401: unauthorizedResponse(MODELS),
    422: problemResponse('A query parameter is invalid; `errors` names it.', MODELS, {
      code: 'validation_failed',
      detail: 'The request query has 1 invalid field.',
      errors: [{ field: 'include_retired', message: 'must be true or false' }],
    }),
    500: internalErrorResponse(MODELS),
    503: unavailableResponse(MODELS, 'The database is unreachable; retry later.'),
  },
});

export const getModelRoute = createRoute({
  method: 'get',
  path: '/v1/models/{id}',
  operationId: 'getModel',
  tags: ['Models'],
  summary: 'Get a model',
  description:
    'One model as `GET /v1/models` lists it, retired or not: a retired model is still found here, ' +
    'with `status: retired`.',
  security,
  request: { params: ModelIdParams },
  responses: {
    200: { description: 'The model.', content: { 'application/json': { schema: Model } } },
    401: unauthorizedResponse(MODEL),
    404: problemResponse('No model has this id.', MODEL, {
      code: 'not_found',
      detail: 'No model with this id.',
    }),
    500: internalErrorResponse(MODEL),
    503: unavailableResponse(MODEL, 'The database is unreachable; retry later.'),
  },
});
