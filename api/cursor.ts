// List cursors: base64url of the last item's (created_at with microseconds, id). Opaque to
// clients; decoding is strict so a mangled cursor is a 422, never a silently wrong page.
import type { ListPosition } from '../db/generations.repository.ts';

const BASE64URL = /^[A-Za-z0-9_-]+$/;
const MICROSECOND_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function encodeCursor(position: ListPosition): string {
  return Buffer.from(JSON.stringify([position.createdAt, position.id])).toString('base64url');
}

/** The position, or undefined when the string is not a cursor this server handed out. */
export function decodeCursor(cursor: string): ListPosition | undefined {
  if (cursor.length > 200 || !BASE64URL.test(cursor)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || value.length !== 2) return undefined;
  const [createdAt, id] = value as unknown[];
  if (typeof createdAt !== 'string' || !MICROSECOND_UTC.test(createdAt)) return undefined;
  if (Number.isNaN(Date.parse(createdAt)) || typeof id !== 'string' || !UUID.test(id)) return undefined;
  return { createdAt, id };
}
