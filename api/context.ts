import type { Logger } from 'pino';
import type { ApiKey } from '../db/types.ts';

/** What middleware puts on the Hono context, typed for every route. */
export interface AppEnv {
  Variables: {
    requestId: string;
    /** Child logger carrying request_id. */
    logger: Logger;
    /** Set by the auth middleware on /v1 routes only. */
    apiKey: ApiKey;
  };
}
