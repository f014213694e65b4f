// The one error catalogue. Every failure the API reports leaves as RFC 9457 problem+json with a
// stable `code`; vendor errors (pg, S3) are normalised here so clients never see their internals.
import { z } from '@hono/zod-openapi';
import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { Logger } from 'pino';
import { UNHANDLED_ERROR } from '../shared/log-events.ts';
import { ObjectStoreError } from '../shared/object-store.ts';
import type { AppEnv } from './context.ts';

export const ERROR_CATALOGUE = {
  invalid_json: { status: 400, title: 'Request body is not valid JSON' },
  bad_request: { status: 400, title: 'Bad request' },
  unauthorized: { status: 401, title: 'Missing or invalid API key' },
  forbidden: { status: 403, title: 'The API key is not allowed to do this' },
  not_found: { status: 404, title: 'Resource not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  request_timeout: { status: 408, title: 'The request was not received in time' },
  generation_finished: { status: 409, title: 'The generation has already finished' },
  payload_too_large: { status: 413, title: 'Request body too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  validation_failed: { status: 422, title: 'Request validation failed' },
  pixel_limit_exceeded: { status: 422, title: 'Image size exceeds the pixel limit' },
  idempotency_key_reused: { status: 422, title: 'Idempotency-Key reused with a different request' },
  webhook_url_forbidden: { status: 422, title: 'The webhook URL points at a forbidden address' },
  model_not_found: { status: 422, title: 'No such model, or it is retired' },
  model_required: { status: 422, title: 'Several models are served and none is the default: name one' },
  unsupported_by_model: { status: 422, title: 'The model cannot run these parameters' },
  too_many_in_flight: { status: 429, title: 'Too many generations in flight for this API key' },
  too_many_streams: { status: 429, title: 'Too many open event streams for this API key' },
  quota_exceeded: { status: 429, title: "The API key's daily quota is used up" },
  headers_too_large: { status: 431, title: 'Request header fields too large' },
  internal_error: { status: 500, title: 'Internal server error' },
  service_unavailable: { status: 503, title: 'Service temporarily unavailable' },
  queue_full: { status: 503, title: 'The generation queue is full' },
  no_models: { status: 503, title: 'No model is registered yet' },
} as const satisfies Record<string, { status: ContentfulStatusCode; title: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;
export const ERROR_CODES = Object.keys(ERROR_CATALOGUE) as ErrorCode[];

/** Seconds a client should wait before retrying after a 503. */
export const RETRY_AFTER_SECONDS = 5;
/** After 429 too_many_in_flight: about one generation's run time frees a slot. */
export const IN_FLIGHT_RETRY_AFTER_SECONDS = 10;
/** After 503 queue_full: a full queue drains slowly, so back off for longer. */
export const QUEUE_FULL_RETRY_AFTER_SECONDS = 30;
/** After 429 too_many_streams: a slot frees only when a client closes a stream; don't hammer. */
export const STREAMS_RETRY_AFTER_SECONDS = 15;

export interface FieldError {
  field: string;
  message: string;
}

export interface ProblemExtra {
  errors?: FieldError[];
  /** Extra members rendered into the problem document (e.g. readiness checks). */
  members?: Record<string, unknown>;
  headers?: Record<string, string>;
}

export class ApiError extends Error {
  override name = 'ApiError';
  readonly code: ErrorCode;
  readonly status: ContentfulStatusCode;
  readonly title: string;
  readonly detail: string;
  readonly extra: ProblemExtra;

  constructor(code: ErrorCode, detail?: string, extra: ProblemExtra = {}, options?: ErrorOptions) {
    const entry = ERROR_CATALOGUE[code];
    super(detail ?? entry.title, options);
    this.code = code;
    this.status = entry.status;
    this.title = entry.title;
    this.detail = detail ?? entry.title;
    this.extra = extra;
  }
}

export function apiError(code: ErrorCode, detail?: string, extra?: ProblemExtra, options?: ErrorOptions) {
  return new ApiError(code, detail, extra, options);
}

export function problemType(code: ErrorCode): string {
  return `urn:easel:problem:${code}`;
}

/** The problem document every error answer carries (RFC 9457), in openapi.yaml as `Problem`. */
export const Problem = z
  .object({
    type: z.string().openapi({ example: 'urn:easel:problem:validation_failed' }),
    title: z.string().openapi({ example: 'Request validation failed' }),
    status: z.int().openapi({ example: 422 }),
    detail: z.string().openapi({ example: 'The request body has 1 invalid field.' }),
    code: z.enum(ERROR_CODES as [ErrorCode, ...ErrorCode[]]).openapi({ example: 'validation_failed' }),
    instance: z.string().openapi({ description: 'The request path.', example: '/v1/generations' }),
    request_id: z.string().openapi({ example: 'f1c2a3b4-0000-4000-8000-000000000000' }),
    errors: z
      .array(
        z.object({
          field: z.string().openapi({ example: 'width' }),
          message: z.string().openapi({ example: 'must be a multiple of 8' }),
        }),
      )
      .optional()
      .openapi({ description: 'Present on validation errors: one entry per offending field.' }),
    quota: z
      .object({
        limit: z.enum(['images_per_day', 'accelerator_seconds_per_day']).openapi({
          description: "Which of the key's daily limits refused the create.",
          example: 'images_per_day',
        }),
        limit_value: z.int().openapi({ description: 'The limit, per UTC day.', example: 100 }),
        used: z.number().openapi({
          description:
            'What counts against it today: images of generations created today that are queued, running ' +
            'or succeeded; or accelerator seconds recorded today.',
          example: 98,
        }),
        requested: z.int().optional().openapi({
          description: 'Images the refused create asked for (images_per_day only).',
          example: 4,
        }),
        resets_at: z.iso.datetime().openapi({
          description: "The next 00:00 UTC, when the day's count starts again (also in Retry-After).",
          example: '2026-12-01T00:00:00.000Z',
        }),
      })
      .optional()
      .openapi({ description: 'Present on quota_exceeded: the limit that refused the create.' }),
  })
  .openapi('Problem', { description: 'RFC 9457 problem details.' });

/** A problem document as rendered: the Problem schema, plus any extra members (readiness checks). */
export type ProblemDocument = z.infer<typeof Problem> & { [member: string]: unknown };

export function problemDocument(error: ApiError, instance: string, requestId: string): ProblemDocument {
  return {
    ...error.extra.members,
    type: problemType(error.code),
    title: error.title,
    status: error.status,
    detail: error.detail,
    code: error.code,
    instance,
    request_id: requestId,
    ...(error.extra.errors ? { errors: error.extra.errors } : {}),
  };
}

export function renderProblem(c: Context<AppEnv>, error: ApiError): Response {
  const requestId = c.get('requestId') ?? '';
  const headers: Record<string, string> = {
    'Content-Type': 'application/problem+json',
    ...error.extra.headers,
  };
  if (error.code === 'unauthorized') headers['WWW-Authenticate'] = 'Bearer';
  if (error.status === 503 && !headers['Retry-After']) headers['Retry-After'] = String(RETRY_AFTER_SECONDS);
  return c.body(JSON.stringify(problemDocument(error, c.req.path, requestId)), error.status, headers);
}

// Errors meaning "Postgres is unreachable right now", as opposed to a bug in our SQL.
const PG_UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'EPIPE',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now
  '53300', // too_many_connections
]);
const PG_UNAVAILABLE_MESSAGES = [
  /timeout exceeded when trying to connect/i,
  /connection terminated/i,
  /connection timeout/i,
  /client has encountered a connection error/i,
  /cannot use a pool after calling end/i,
];

/** True when the error (or anything in its cause chain) says the database cannot be reached. */
export function isDatabaseUnavailable(error: unknown, depth = 0): boolean {
  if (!(error instanceof Error) || depth > 5) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (PG_UNAVAILABLE_CODES.has(code) || code.startsWith('08'))) return true;
  if (PG_UNAVAILABLE_MESSAGES.some((re) => re.test(error.message))) return true;
  if (error instanceof AggregateError && error.errors.some((e) => isDatabaseUnavailable(e, depth + 1))) {
    return true;
  }
  return isDatabaseUnavailable(error.cause, depth + 1);
}

/**
 * SQLSTATE class 22 (data exception: a value out of range, NUL in text, a bad date): a request
 * value that got past validation, never the server's state. Validation should catch them first.
 */
export function isDatabaseDataError(error: unknown, depth = 0): boolean {
  if (!(error instanceof Error) || depth > 5) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && /^22[0-9A-Z]{3}$/.test(code)) return true;
  return isDatabaseDataError(error.cause, depth + 1);
}

function fromHttpException(error: HTTPException): ApiError {
  switch (error.status) {
    case 400:
      // The only 400 Hono raises on our routes is the JSON validator's parse failure.
      return apiError('invalid_json', 'The request body could not be parsed as JSON.');
    case 401:
      return apiError('unauthorized');
    case 404:
      return apiError('not_found');
    case 413:
      return apiError('payload_too_large');
    case 415:
      return apiError('unsupported_media_type', 'Send the request body as application/json.');
    default:
      return error.status >= 500 ? apiError('internal_error') : apiError('bad_request', error.message);
  }
}

/** Maps anything thrown to the catalogue; unknown errors become a bare internal_error. */
export function toApiError(error: unknown): ApiError | undefined {
  if (error instanceof ApiError) return error;
  if (error instanceof HTTPException) return fromHttpException(error);
  if (error instanceof ObjectStoreError) {
    return apiError(
      'service_unavailable',
      'The object store is unreachable; retry later.',
      {},
      { cause: error },
    );
  }
  if (isDatabaseUnavailable(error)) {
    return apiError('service_unavailable', 'The database is unreachable; retry later.', {}, { cause: error });
  }
  if (isDatabaseDataError(error)) {
    const detail = 'The request holds a value the database cannot store.';
    return apiError('validation_failed', detail, {}, { cause: error });
  }
  return undefined;
}

/** Told of every problem response (metrics count them by code); must not throw. */
export type ProblemObserver = (code: ErrorCode) => void;

export function createErrorHandler(logger: Logger, onProblem?: ProblemObserver): ErrorHandler<AppEnv> {
  return (error, c) => {
    const log = c.get('logger') ?? logger;
    let problem = toApiError(error);
    if (problem && problem.cause !== undefined && isDatabaseDataError(problem.cause)) {
      log.warn({ err: problem.cause }, 'database refused a request value that passed validation');
    }
    if (problem && problem.status >= 500) {
      log.warn({ code: problem.code, detail: problem.detail, err: problem.cause }, 'service unavailable');
    }
    if (!problem) {
      log.error({ err: error }, UNHANDLED_ERROR);
      problem = apiError('internal_error', 'An unexpected error occurred.');
    }
    onProblem?.(problem.code);
    return renderProblem(c, problem);
  };
}

/**
 * No route matched. When the path is known but the method is not, that is 405 with `Allow`
 * (RFC 9110 §15.5.6), so `allowedMethods` lists what the path answers ([] for an unknown path).
 */
export function createNotFoundHandler(
  onProblem?: ProblemObserver,
  allowedMethods: (path: string) => string[] = () => [],
): NotFoundHandler<AppEnv> {
  return (c) => {
    const allowed = allowedMethods(c.req.path);
    // A handler's own c.notFound() on a method the path does answer stays a 404.
    if (allowed.length > 0 && !allowed.includes(c.req.method)) {
      onProblem?.('method_not_allowed');
      const detail = `${c.req.path} does not answer ${c.req.method}; it answers ${allowed.join(', ')}.`;
      return renderProblem(
        c,
        apiError('method_not_allowed', detail, { headers: { Allow: allowed.join(', ') } }),
      );
    }
    onProblem?.('not_found');
    return renderProblem(c, apiError('not_found', `No route for ${c.req.method} ${c.req.path}.`));
  };
}
