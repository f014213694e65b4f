import type { MiddlewareHandler } from 'hono';
import { findActiveApiKeys } from '../db/api-keys.repository.ts';
import type { Db } from '../db/connect.ts';
import type { ApiKey } from '../db/types.ts';
import { createBatcher } from './batcher.ts';
import type { AppEnv } from './context.ts';
import { apiError } from './errors.ts';

const BEARER = /^Bearer[ ]+([^\s]+)\s*$/i;

/** `Authorization: Bearer <key>` → the active ApiKey in `c.var.apiKey`; anything else is a 401. */
export function bearerAuth(db: Db): MiddlewareHandler<AppEnv> {
  // Every authenticated request looks its key up; under load, lookups that arrive while others
  // are in flight share one query. Nothing is cached: a revoked key fails its next request.
  const lookUp = createBatcher<string, ApiKey | undefined>(
    async (keys) => {
      const found = await findActiveApiKeys(db, keys);
      return keys.map((key) => found.get(key));
    },
    { concurrency: 2, maxBatch: 100 },
  );
  return async (c, next) => {
    const header = c.req.header('Authorization');
    if (!header) throw apiError('unauthorized', 'Send your API key as "Authorization: Bearer <key>".');
    const match = BEARER.exec(header);
    if (!match?.[1]) throw apiError('unauthorized', 'The Authorization header must be "Bearer <key>".');
    const apiKey = await lookUp(match[1]);
    if (!apiKey) throw apiError('unauthorized', 'The API key is unknown or revoked.');
    c.set('apiKey', apiKey);
    c.set('logger', c.get('logger').child({ api_key_id: apiKey.id }));
    await next();
  };
}

/** After bearerAuth: only an operator key (`easel keys create --admin`) passes; others get 403. */
export const requireAdmin: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (!c.get('apiKey').admin) {
    throw apiError('forbidden', 'This endpoint needs an admin API key (easel keys create --admin).');
  }
  await next();
};
