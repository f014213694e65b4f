import type { Hook } from '@hono/zod-openapi';
import type { z } from 'zod';
import type { AppEnv } from './context.ts';
import { apiError, type FieldError } from './errors.ts';

const TYPE_NAMES: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  object: 'a JSON object',
  boolean: 'true or false',
  array: 'an array',
  null: 'null',
};

/** zod's messages are written for developers; these are for API clients. */
function messageFor(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type': {
      // Issues carry no input by default; zod's own message says what it received.
      const received = /received (\w+)/.exec(issue.message)?.[1];
      if (received === 'undefined') return 'is required';
      const expected = `must be ${TYPE_NAMES[issue.expected] ?? issue.expected}`;
      // 1.5 where an integer belongs is "a number" too: saying so would only confuse.
      const fractional = issue.expected === 'int' && received === 'number';
      const got = received && !fractional ? (TYPE_NAMES[received] ?? received) : undefined;
      return got ? `${expected}, not ${got}` : expected;
    }
    case 'too_small':
      if (issue.origin === 'string') {
        return Number(issue.minimum) <= 1
          ? 'must not be empty'
          : `must be at least ${issue.minimum} characters`;
      }
      return `must be ${issue.inclusive ? 'at least' : 'greater than'} ${issue.minimum}`;
    case 'too_big':
      if (issue.origin === 'string') return `must be at most ${issue.maximum} characters`;
      return `must be ${issue.inclusive ? 'at most' : 'less than'} ${issue.maximum}`;
    case 'not_multiple_of':
      return `must be a multiple of ${issue.divisor}`;
    case 'unrecognized_keys':
      return 'unknown field';
    default:
      return issue.message;
  }
}

/** zod issues → `errors[]`: one entry per offending field, its messages joined. */
export function fieldErrors(error: z.ZodError): FieldError[] {
  const byField = new Map<string, string[]>();
  const add = (field: string, message: string) => {
    const messages = byField.get(field) ?? [];
    if (!messages.includes(message)) messages.push(message);
    byField.set(field, messages);
  };
  for (const issue of error.issues) {
    const base = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) add([...base, key].join('.'), messageFor(issue));
    } else {
      add(base.join('.') || 'body', messageFor(issue));
    }
  }
  return [...byField].map(([field, messages]) => ({ field, message: messages.join('; ') }));
}

function isUuidIssue(issue: z.core.$ZodIssue): boolean {
  return issue.code === 'invalid_format' && issue.format === 'uuid';
}

/** The OpenAPIHono defaultHook: every failed request validation leaves through onError. */
export const validationHook: Hook<unknown, AppEnv, string, unknown> = (result) => {
  if (result.success) return;
  // An id that is not a UUID names nothing: not found. Other path parameters (an image index) are
  // values like query parameters: a malformed one is a validation failure naming it.
  if (result.target === 'param' && result.error.issues.some((issue) => isUuidIssue(issue))) {
    throw apiError('not_found', 'No resource with this id.');
  }
  const errors = fieldErrors(result.error);
  const noun = errors.length === 1 ? 'field' : 'fields';
  const part =
    result.target === 'json' || result.target === 'form'
      ? 'body'
      : result.target === 'param'
        ? 'path'
        : result.target;
  throw apiError('validation_failed', `The request ${part} has ${errors.length} invalid ${noun}.`, {
    errors,
  });
};
