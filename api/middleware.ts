import type { Context, MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import type { AppEnv } from './context.ts';
import { apiError } from './errors.ts';

/** A child logger carrying request_id, and one JSON access line per request. */
export function requestLogging(logger: Logger): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const started = performance.now();
    c.set('logger', logger.child({ request_id: c.get('requestId') }));
    try {
      await next();
    } finally {
      c.get('logger').info(
        {
          method: c.req.method,
          path: c.req.path,
          status: c.res.status,
          duration_ms: Math.round((performance.now() - started) * 100) / 100,
        },
        'request',
      );
    }
  };
}

/**
 * Everything the request logs from here on, its access line and any error included, carries the
 * generation id, so one id finds every line about a generation across requests.
 */
export function bindGenerationId(c: Context<AppEnv>, generationId: string): void {
  c.set('logger', c.get('logger').child({ generation_id: generationId }));
}

/**
 * Bodies must be application/json exactly (charset parameter allowed). Runs before the JSON
 * validator, which would otherwise also accept other `+json` types or ignore a missing type.
 */
export const requireJson: MiddlewareHandler<AppEnv> = async (c, next) => {
  const contentType = c.req.header('Content-Type');
  const mediaType = contentType?.split(';')[0]?.trim().toLowerCase();
  if (mediaType !== 'application/json') {
    throw apiError(
      'unsupported_media_type',
      contentType
        ? `Content-Type ${mediaType} is not supported; send application/json.`
        : 'Send the request body as application/json.',
    );
  }
  await next();
};
