// List cursors: opaque to clients, checked on the way back in. A cursor is the base64url of
// [version 1][created_at: signed ms since the epoch, 8 bytes][id: 16 bytes][tag: 12 bytes], the
// tag an HMAC-SHA256 over the rest and the API key it was handed to. Anything else (a mangled or
// made-up cursor, one from another API key, one whose instant Postgres or a Date cannot hold)
// decodes to undefined and the request is a 422: never a silently wrong page, never a 500.
//
// The tag makes cursors tamper-evident, not secret: its key is fixed, so every replica reads every
// other's cursors across restarts. Someone who reads this source can forge a cursor, but only
// one for their own key, pointing at a real instant: a page of their own generations.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { ListPosition } from '../db/generations.repository.ts';

const VERSION = 1;
const TAG_BYTES = 12;
const LENGTH = 1 + 8 + 16 + TAG_BYTES;
const TAG_KEY = 'easel list cursor v1';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Instants both a Date's ISO form and Postgres read back unchanged: years 0001 to 9999, UTC. */
const MIN_INSTANT_MS = Date.parse('0001-01-01T00:00:00.000Z');
const MAX_INSTANT_MS = Date.parse('9999-12-31T23:59:59.999Z');

function tag(body: Buffer, scope: string): Buffer {
  return createHmac('sha256', TAG_KEY).update(body).update(scope).digest().subarray(0, TAG_BYTES);
}

/**
 * `scope` binds the cursor to whom it was handed (the API key id): another scope cannot decode it.
 * `position.createdAt` must be an ISO instant with at most millisecond precision.
 */
export function encodeCursor(position: ListPosition, scope = ''): string {
  const ms = Date.parse(position.createdAt);
  if (!Number.isSafeInteger(ms) || ms < MIN_INSTANT_MS || ms > MAX_INSTANT_MS || !UUID.test(position.id)) {
    throw new RangeError(`no cursor for position ${JSON.stringify(position)}`);
  }
  const body = Buffer.alloc(1 + 8 + 16);
  body.writeUInt8(VERSION, 0);
  body.writeBigInt64BE(BigInt(ms), 1);
  Buffer.from(position.id.replaceAll('-', ''), 'hex').copy(body, 9);
  return Buffer.concat([body, tag(body, scope)]).toString('base64url');
}

/** The position, or undefined when the string is not a cursor this server handed to `scope`. */
export function decodeCursor(cursor: string, scope = ''): ListPosition | undefined {
  if (cursor.length > 64) return undefined;
  const bytes = Buffer.from(cursor, 'base64url');
  // Buffer.from skips characters outside the alphabet: only the canonical spelling is ours.
  if (bytes.length !== LENGTH || bytes.toString('base64url') !== cursor) return undefined;
  if (bytes.readUInt8(0) !== VERSION) return undefined;
  const body = bytes.subarray(0, LENGTH - TAG_BYTES);
  if (!timingSafeEqual(bytes.subarray(LENGTH - TAG_BYTES), tag(body, scope))) return undefined;
  const ms = bytes.readBigInt64BE(1);
  if (ms < BigInt(MIN_INSTANT_MS) || ms > BigInt(MAX_INSTANT_MS)) return undefined;
  const hex = bytes.subarray(9, 25).toString('hex');
  const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { createdAt: new Date(Number(ms)).toISOString(), id };
}
