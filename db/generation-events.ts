// The reads behind the API's event streams (api/event-hub.ts). Each one serves every open stream of
// an API process at once: the hub reads a generation once per notification, never once per client.
import { type Kysely, sql } from 'kysely';
import { fairQueuePositions, queuePositionSql } from './fair-queue.ts';
import { generationQueue } from './queue.ts';
import type { Database, Generation } from './types.ts';

type Executor = Kysely<Database>;

/** A row as the streams show it: with its queue position (null unless queued). */
export type EventRow = Generation & { queue_position: number | null };

/** The rows of these ids that exist, in no particular order. */
export async function readEventRows(db: Executor, ids: readonly string[]): Promise<EventRow[]> {
  if (ids.length === 0) return [];
  return db
    .selectFrom('generations as g')
    .selectAll('g')
    .select(queuePositionSql('g').as('queue_position'))
    .where(sql<boolean>`g.id = any(${[...ids]}::uuid[])`)
    .execute();
}

/**
 * The database's clock. Resume points are in its time, so they mean the same to every API process
 * (a client may reconnect to another replica, or to the API after a restart).
 */
export async function databaseNow(db: Executor): Promise<Date> {
  const { rows } = await sql<{ now: Date }>`select now() as now`.execute(db);
  const row = rows[0];
  if (!row) throw new Error('select now() returned no row');
  return row.now;
}

/**
 * What a stream of all a key's generations opens with: each queued or running one, and with
 * `finishedAfter` (a resume) those finished since, at most `limit` of them (the last finished).
 */
export async function eventRowsOfKey(
  db: Executor,
  apiKeyId: string,
  finishedAfter: Date | undefined,
  limit: number,
): Promise<EventRow[]> {
  const base = () =>
    db
      .selectFrom('generations as g')
      .selectAll('g')
      .select(queuePositionSql('g').as('queue_position'))
      .where('g.api_key_id', '=', apiKeyId);
  const [live, finished] = await Promise.all([
    // generations_in_flight_idx: bounded by the key's in-flight cap.
    base().where('g.status', 'in', ['queued', 'running']).execute(),
    finishedAfter === undefined
      ? Promise.resolve([])
      : base()
          .where('g.finished_at', '>', finishedAfter)
          .orderBy('g.finished_at', 'desc')
          .limit(limit)
          .execute(),
  ]);
  return [...finished, ...live];
}

/**
 * Ids of the keys' generations queued after `since` (all their queued ones without it), and the
 * database's clock when read: how the hub learns of generations created after a stream opened.
 */
export async function queuedSince(
  db: Executor,
  apiKeyIds: readonly string[],
  since: Date | undefined,
): Promise<{ ids: string[]; now: Date }> {
  const after = since === undefined ? sql`true` : sql`created_at > ${since}`;
  const { rows } = await sql<{ ids: string[]; now: Date }>`
    select now() as now, coalesce(array_agg(id::text), '{}') as ids
    from generations
    where status = 'queued' and api_key_id = any(${[...apiKeyIds]}::uuid[]) and ${after}`.execute(db);
  const row = rows[0];
  if (!row) throw new Error('queuedSince returned no row');
  return row;
}

/**
 * The queue position of each of `ids` still queued, over the queues of their models in one pass
 * (db/fair-queue.ts): O(waiting jobs of those models) however many ids follow.
 */
export async function queuePositions(
  db: Executor,
  models: readonly (string | null)[],
  ids: readonly string[],
): Promise<Map<string, number>> {
  return fairQueuePositions(db, models.map(generationQueue), ids);
}
