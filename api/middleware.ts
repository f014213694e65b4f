import type { Context, MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import { REQUEST } from '../shared/log-events.ts';
import type { AppEnv } from './context.ts';
import { apiError } from './errors.ts';
import { checkedJsonText } from './json-body.ts';

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
        REQUEST,
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
 * Bodies must be application/json exactly (charset parameter allowed), UTF-8 without malformed
 * sequences, JSON without duplicate keys, NUL characters or unpaired surrogates (json-body.ts).
 * Runs before the JSON validator, which would otherwise also accept other `+json` types, ignore a
 * missing type, and decode malformed bytes lossily.
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
  const bytes = await c.req.arrayBuffer().catch((error: unknown) => {
    throw apiError('bad_request', 'The request body could not be read.', {}, { cause: error });
  });
  // The validator then parses these same (cached) bytes, now known to decode losslessly.
  checkedJsonText(new Uint8Array(bytes));
  await next();
};
