// OpenAPI documentation for error responses, built from the error catalogue so the documented
// examples are exactly what onError renders.
import { type ApiError, apiError, type ErrorCode, type FieldError, problemDocument } from './errors.ts';
import { Problem } from './generations.schemas.ts';

const EXAMPLE_REQUEST_ID = 'f1c2a3b4-5d6e-4f70-8a9b-0c1d2e3f4a5b';

export interface ProblemExample {
  code: ErrorCode;
  detail?: string;
  errors?: FieldError[];
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
          value: exampleOf(apiError(e.code, e.detail, e.errors ? { errors: e.errors } : {}), instance),
        },
      ]),
    ),
  };
  return { description, content: { 'application/problem+json': media } };
}
