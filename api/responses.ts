// OpenAPI documentation for error responses, built from the error catalogue so the documented
// examples are exactly what onError renders.
import {
  type ApiError,
  apiError,
  type ErrorCode,
  type FieldError,
  Problem,
  problemDocument,
  RETRY_AFTER_SECONDS,
} from './errors.ts';

const EXAMPLE_REQUEST_ID = 'f1c2a3b4-5d6e-4f70-8a9b-0c1d2e3f4a5b';

export interface ProblemExample {
  code: ErrorCode;
  detail?: string;
  errors?: FieldError[];
  /** Extra members of the example document (e.g. quota_exceeded's `quota`). */
  members?: Record<string, unknown>;
  summary?: string;
}

function exampleOf(error: ApiError, instance: string) {
  return problemDocument(error, instance, EXAMPLE_REQUEST_ID);
}

/**
 * A documented error response: the Problem schema with one named example per error code that
 * can produce this status on this route.
 */
export function problemResponse(description: string, instance: string, ...examples: ProblemExample[]) {
  const media = {
    schema: Problem,
    examples: Object.fromEntries(
      examples.map((e) => [
        e.code,
        {
          summary: e.summary ?? e.code,
          value: exampleOf(
            apiError(e.code, e.detail, {
              ...(e.errors ? { errors: e.errors } : {}),
              ...(e.members ? { members: e.members } : {}),
            }),
            instance,
          ),
        },
      ]),
    ),
  };
  return { description, content: { 'application/problem+json': media } };
}

/** A 429/503 answer's Retry-After header. */
export const retryAfterHeader = (example: number) =>
  ({ description: 'Seconds to wait before retrying.', schema: { type: 'integer', example } }) as const;

/** 401 on every authenticated operation (bearerAuth runs before anything else under /v1). */
export function unauthorizedResponse(instance: string) {
  return {
    ...problemResponse('Missing, unknown or revoked API key.', instance, {
      code: 'unauthorized',
      detail: 'Send a valid key as "Authorization: Bearer <key>".',
    }),
    headers: {
      'WWW-Authenticate': { description: 'The auth scheme to use: `Bearer`.', schema: { type: 'string' } },
    },
  } as const;
}

/**
 * 413 on every operation that takes a request body, or could be sent one: the body limit applies
 * to every request before routing, a POST without a documented body included.
 */
export function payloadTooLargeResponse(instance: string) {
  return problemResponse('The body is larger than the server limit (BODY_LIMIT_BYTES).', instance, {
    code: 'payload_too_large',
    detail: 'The body must not exceed 65536 bytes.',
  });
}

export function internalErrorResponse(instance: string) {
  return problemResponse(
    'An unexpected error; the details are in the server log under request_id.',
    instance,
    { code: 'internal_error', detail: 'An unexpected error occurred.' },
  );
}

/** 503 with Retry-After: a dependency is unreachable, plus any other 503 codes the route has. */
export function unavailableResponse(
  instance: string,
  description = 'The database or the object store is unreachable; retry later.',
  retryAfterExample = RETRY_AFTER_SECONDS,
  ...more: ProblemExample[]
) {
  return {
    ...problemResponse(
      description,
      instance,
      { code: 'service_unavailable', detail: 'The database is unreachable; retry later.' },
      ...more,
    ),
    headers: { 'Retry-After': retryAfterHeader(retryAfterExample) },
  } as const;
}
