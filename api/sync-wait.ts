// `Prefer: wait=N` (RFC 7240) on create: hold the response until the generation has finished
// or N seconds have passed, without holding a database connection while waiting.
import type { Db } from '../db/connect.ts';
import { findGenerationForOwner } from '../db/generations.repository.ts';
import { type Generation, TERMINAL_STATUSES } from '../db/types.ts';
import type { StatusSubscription } from './status-listener.ts';

export const MAX_WAIT_SECONDS = 60;

const WAIT_PREFERENCE = /^\s*wait\s*=\s*"?(\d+)"?\s*$/i;

/**
 * The `wait` preference in seconds, clamped to 1..60; undefined when absent, zero or malformed
 * (a preference the server cannot honour is ignored, as RFC 7240 asks).
 */
export function preferredWaitSeconds(header: string | undefined): number | undefined {
  if (!header) return undefined;
  for (const preference of header.split(',')) {
    const match = WAIT_PREFERENCE.exec(preference.split(';')[0] ?? '');
    if (!match?.[1]) continue;
    const seconds = Number(match[1]);
    return seconds >= 1 ? Math.min(seconds, MAX_WAIT_SECONDS) : undefined;
  }
  return undefined;
}

export function isTerminal(row: Pick<Generation, 'status'>): boolean {
  return TERMINAL_STATUSES.includes(row.status);
}

/**
 * Waits for a notification (or the deadline), then re-reads the row once: a pool connection is
 * used only for that read. Returns the last row read (undefined only if it disappeared).
 */
export async function waitForTerminal(options: {
  db: Db;
  subscription: StatusSubscription;
  generationId: string;
  apiKeyId: string;
  seconds: number;
  signal?: AbortSignal;
}): Promise<Generation | undefined> {
  const deadline = Date.now() + options.seconds * 1000;
  for (;;) {
    const notified = await options.subscription.next(deadline - Date.now(), options.signal);
    const row = await findGenerationForOwner(options.db, options.generationId, options.apiKeyId);
    if (!row || isTerminal(row) || !notified || Date.now() >= deadline) return row;
  }
}
