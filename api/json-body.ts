// The one place request bodies become JSON values. Hono's c.req.json() decodes bytes lossily
// (a malformed sequence becomes U+FFFD) and JSON.parse keeps the last of duplicate keys and
// accepts "\ud800": each would silently change what the client sent. Here they are refused, as
// are NUL characters, which Postgres text cannot hold.
import { apiError, type FieldError } from './errors.ts';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A field path as the errors[] of a problem name it: `webhook_events.0`, `body` for the root. */
function fieldName(path: readonly (string | number)[]): string {
  return path.length === 0 ? 'body' : path.join('.');
}

/** Deeper than any body of ours: refused before anything walks the value recursively. */
export const MAX_NESTING = 32;

/**
 * Keys that occur twice in one object, as field paths, and whether arrays and objects nest deeper
 * than MAX_NESTING (the scan stops there). Runs on text JSON.parse has accepted, so it only has to
 * tell keys from values and decode key strings (`"a"` and `"\u0061"` are one key).
 */
export function scanJson(text: string): { duplicates: string[]; tooDeep: boolean } {
  type Frame = { keys: Set<string> | undefined; path: (string | number)[]; index: number; key?: string };
  const stack: Frame[] = [];
  const found: string[] = [];
  // In an object, the next string is a key right after `{` or `,`.
  let expectKey = false;
  const childPath = (frame: Frame | undefined): (string | number)[] => {
    if (!frame) return [];
    return [...frame.path, frame.keys ? (frame.key ?? '') : frame.index];
  };
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const top = stack.at(-1);
      if (expectKey && top?.keys) {
        const raw = text.slice(i + 1, end);
        const key = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
        if (top.keys.has(key)) found.push(fieldName([...top.path, key]));
        top.keys.add(key);
        top.key = key;
        expectKey = false;
      }
      i = end;
    } else if (ch === '{' || ch === '[') {
      if (stack.length === MAX_NESTING) return { duplicates: [...new Set(found)], tooDeep: true };
      const parent = stack.at(-1);
      stack.push({ keys: ch === '{' ? new Set() : undefined, path: childPath(parent), index: 0 });
      expectKey = ch === '{';
    } else if (ch === '}' || ch === ']') {
      stack.pop();
      expectKey = false;
    } else if (ch === ',') {
      const top = stack.at(-1);
      if (top?.keys) expectKey = true;
      else if (top) top.index++;
    }
  }
  return { duplicates: [...new Set(found)], tooDeep: false };
}

/** Strings (keys included) that Postgres cannot store or that are not Unicode text. */
function badStrings(value: unknown, path: (string | number)[], errors: FieldError[]): void {
  const check = (s: string, at: (string | number)[]) => {
    if (s.includes('\u0000')) {
      errors.push({ field: fieldName(at), message: 'must not contain NUL characters (U+0000)' });
    } else if (!s.isWellFormed()) {
      errors.push({
        field: fieldName(at),
        message: 'must be valid Unicode: it contains an unpaired surrogate (such as "\\ud800")',
      });
    }
  };
  if (typeof value === 'string') check(value, path);
  else if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) badStrings(item, [...path, i], errors);
  } else if (value !== null && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      check(key, [...path, key]);
      badStrings(item, [...path, key], errors);
    }
  }
}

/**
 * Bytes → the JSON text the validators may parse. Throws `invalid_json` (400) for bytes that are
 * not UTF-8 or text that is not JSON, and `validation_failed` (422, naming the fields) for
 * duplicate keys, NUL characters and unpaired surrogates.
 */
export function checkedJsonText(bytes: Uint8Array): string {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    throw apiError('invalid_json', 'The request body is not valid UTF-8.');
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    const at = /position (\d+)/.exec(error instanceof Error ? error.message : '')?.[1];
    throw apiError(
      'invalid_json',
      at === undefined
        ? 'The request body could not be parsed as JSON.'
        : `The request body could not be parsed as JSON (at character ${at}).`,
    );
  }
  const { duplicates, tooDeep } = scanJson(text);
  if (tooDeep) {
    throw apiError('validation_failed', 'The request body has 1 invalid field.', {
      errors: [
        { field: 'body', message: `must not nest arrays and objects deeper than ${MAX_NESTING} levels` },
      ],
    });
  }
  const errors: FieldError[] = duplicates.map((field) => ({
    field,
    message: 'appears more than once; send each field once',
  }));
  badStrings(value, [], errors);
  if (errors.length > 0) {
    const noun = errors.length === 1 ? 'field' : 'fields';
    throw apiError('validation_failed', `The request body has ${errors.length} invalid ${noun}.`, { errors });
  }
  return text;
}
