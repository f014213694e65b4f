// Integers in query strings and paths: decimal digits only. z.coerce.number() would also take
// `0x10`, `1e1`, ` 1`, `+1` and `` (as 0), and documents the parameter as an optional
// `[integer, null]`; this keeps the OpenAPI schema the inner integer schema, required in a path.
import { z } from '@hono/zod-openapi';

const DECIMAL_DIGITS = /^[0-9]+$/;

/** `schema` (an integer schema, optionally with a default) read from a string of decimal digits. */
export function integerParam<T extends z.ZodType>(schema: T) {
  return z.preprocess((value, ctx) => {
    if (typeof value !== 'string') return value;
    if (DECIMAL_DIGITS.test(value)) return Number(value);
    ctx.addIssue({ code: 'custom', message: 'must be a whole number written in decimal digits (0-9)' });
    return z.NEVER;
  }, schema);
}
