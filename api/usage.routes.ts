import { createRoute } from '@hono/zod-openapi';
import {
  internalErrorResponse,
  problemResponse,
  unauthorizedResponse,
  unavailableResponse,
} from './responses.ts';
import { Usage, UsageQuery } from './usage.schemas.ts';

const security = [{ bearerAuth: [] }];
const USAGE = '/v1/usage';

export const getUsageRoute = createRoute({
  method: 'get',
  path: '/v1/usage',
  operationId: 'getUsage',
  tags: ['Usage'],
  summary: "What a key's generations cost on the accelerators",
  description:
    'Sums the usage ledger over a range, per UTC day or per model: attempts, succeeded generations, ' +
    'images, pixel-steps and accelerator time. Every attempt that ran on a worker is one record, ' +
    'written with its outcome (a failed, canceled or retried attempt costs its accelerator time too); ' +
    'attempts whose worker died before recording them are not metered. A key sees its own usage; ' +
    'admin keys may name another key or `all` with `api_key_id`.',
  security,
  request: { query: UsageQuery },
  responses: {
    200: { description: 'The usage.', content: { 'application/json': { schema: Usage } } },
    401: unauthorizedResponse(USAGE),
    403: problemResponse('`api_key_id` was given with a key that is not an admin key.', USAGE, {
      code: 'forbidden',
      detail: 'Only an admin API key may choose whose usage to read (api_key_id).',
    }),
    422: problemResponse(
      'A query parameter is invalid, or the range is empty or too long; `errors` names the parameter.',
      USAGE,
      {
        code: 'validation_failed',
        summary: 'a malformed parameter',
        detail: 'The request query has 1 invalid field.',
        errors: [
          {
            field: 'from',
            message:
              'must be a date (YYYY-MM-DD, meaning 00:00 UTC) or an RFC 3339 date-time with a time zone',
          },
        ],
      },
    ),
    500: internalErrorResponse(USAGE),
    503: unavailableResponse(USAGE, 'The database is unreachable; retry later.'),
  },
});
