import { type Kysely, sql } from 'kysely';
import type {
  Database,
  Generation,
  GenerationStatus,
  NewGeneration,
  StageTimingsRecord,
  StoredOutput,
} from './types.ts';

type Executor = Kysely<Database>;

/** API processes LISTEN here to answer `Prefer: wait` requests; the payload is the generation id. */
export const GENERATION_STATUS_CHANNEL = 'easel_generation_status';

/**
 * Tells listening API processes that a generation reached a terminal status. Inside a
 * transaction Postgres delivers it on commit, so a listener never sees a status it cannot read.
 */
export async function notifyStatusChange(db: Executor, id: string): Promise<void> {
  await sql`select pg_notify(${GENERATION_STATUS_CHANNEL}, ${id})`.execute(db);
}

export async function insertGeneration(db: Executor, row: NewGeneration): Promise<Generation> {
  return db.insertInto('generations').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function findGeneration(db: Executor, id: string): Promise<Generation | undefined> {
  return db.selectFrom('generations').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Another key's generation is indistinguishable from a missing one (the API answers 404). */
export async function findGenerationForOwner(
  db: Executor,
  id: string,
  apiKeyId: string,
): Promise<Generation | undefined> {
  return db
    .selectFrom('generations')
    .selectAll()
    .where('id', '=', id)
    .where('api_key_id', '=', apiKeyId)
    .executeTakeFirst();
}

/**
 * How many queued generations (all owners) were accepted before this one: 0 means next.
 * Counted from our own table, not pg-boss's cached statistics.
 */
export async function queuePosition(db: Executor, generation: Pick<Generation, 'id' | 'created_at'>) {
  const row = await db
    .selectFrom('generations')
    .select(sql<number>`count(*)::int`.as('ahead'))
    .where('status', '=', 'queued')
    .where(sql<boolean>`(created_at, id) < (${generation.created_at}, ${generation.id}::uuid)`)
    .executeTakeFirstOrThrow();
  return row.ahead;
}

/**
 * Claims the row for an attempt. Returns undefined when the generation is gone or already
 * ended (canceled while queued, or finished by an earlier attempt that crashed before acking),
 * in which case the job must not run.
 */
export async function markRunning(db: Executor, id: string): Promise<Generation | undefined> {
  return db
    .updateTable('generations')
    .set({
      status: 'running',
      started_at: sql`now()`,
      attempts: sql`attempts + 1`,
      error_code: null,
      error_message: null,
      updated_at: sql`now()`,
    })
    .where('id', '=', id)
    .where('status', 'in', ['queued', 'running'])
    .returningAll()
    .executeTakeFirst();
}

/** Shown to clients while the generation still runs. */
export async function recordTranslation(
  db: Executor,
  id: string,
  promptEn: string,
  negativePromptEn: string,
) {
  await db
    .updateTable('generations')
    .set({ prompt_en: promptEn, negative_prompt_en: negativePromptEn, updated_at: sql`now()` })
    .where('id', '=', id)
    .execute();
}

export interface SuccessRecord {
  promptEn: string;
  negativePromptEn: string;
  outputs: StoredOutput[];
  timings: StageTimingsRecord;
  scheduler: string;
  promptTruncated: boolean;
}

export async function markSucceeded(db: Executor, id: string, result: SuccessRecord) {
  const row = await db
    .updateTable('generations')
    .set({
      status: 'succeeded',
      prompt_en: result.promptEn,
      negative_prompt_en: result.negativePromptEn,
      outputs: JSON.stringify(result.outputs),
      timings: JSON.stringify(result.timings),
      scheduler: result.scheduler,
      prompt_truncated: result.promptTruncated,
      finished_at: sql`now()`,
      updated_at: sql`now()`,
    })
    .where('id', '=', id)
    .where('status', '=', 'running')
    .returningAll()
    .executeTakeFirst();
  if (row) await notifyStatusChange(db, id);
  return row;
}

export async function markFailed(db: Executor, id: string, error: { code: string; message: string }) {
  const row = await db
    .updateTable('generations')
    .set({
      status: 'failed',
      error_code: error.code,
      error_message: error.message.slice(0, 2000),
      finished_at: sql`now()`,
      updated_at: sql`now()`,
    })
    .where('id', '=', id)
    .where('status', 'in', ['queued', 'running'])
    .returningAll()
    .executeTakeFirst();
  if (row) await notifyStatusChange(db, id);
  return row;
}

/** Puts a running generation back to queued (graceful shutdown handed the job back to the queue). */
export async function markRequeued(db: Executor, id: string) {
  return db
    .updateTable('generations')
    .set({ status: 'queued', started_at: null, updated_at: sql`now()` })
    .where('id', '=', id)
    .where('status', '=', 'running')
    .executeTakeFirst();
}

/** A position in the newest-first listing: rows after it are strictly older in (created_at, id). */
export interface ListPosition {
  /** created_at in UTC with microseconds, exactly as stored (a JS Date would drop them). */
  createdAt: string;
  id: string;
}

export interface ListGenerationsQuery {
  apiKeyId: string;
  limit: number;
  statuses?: readonly GenerationStatus[];
  /** Exclusive bounds on created_at (ISO 8601). */
  createdAfter?: string;
  createdBefore?: string;
  after?: ListPosition;
}

export type ListedGeneration = Generation & { position: ListPosition; queue_position: number | null };

/**
 * One owner's generations, newest first, by keyset over (created_at, id): a page never shifts
 * when rows are inserted meanwhile, because new rows sort before any cursor already handed out.
 * Fetches one row more than `limit` so the caller knows whether another page exists.
 */
export async function listGenerations(
  db: Executor,
  query: ListGenerationsQuery,
): Promise<{ rows: ListedGeneration[]; hasMore: boolean }> {
  let q = db
    .selectFrom('generations as g')
    .selectAll('g')
    .select([
      sql<string>`to_char(g.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.as(
        'position_at',
      ),
      sql<number | null>`case when g.status = 'queued' then (
        select count(*)::int from generations q
        where q.status = 'queued' and (q.created_at, q.id) < (g.created_at, g.id)) end`.as('queue_position'),
    ])
    .where('g.api_key_id', '=', query.apiKeyId);
  if (query.statuses && query.statuses.length > 0) q = q.where('g.status', 'in', [...query.statuses]);
  if (query.createdAfter) q = q.where('g.created_at', '>', sql<Date>`${query.createdAfter}::timestamptz`);
  if (query.createdBefore) q = q.where('g.created_at', '<', sql<Date>`${query.createdBefore}::timestamptz`);
  if (query.after) {
    const { createdAt, id } = query.after;
    q = q.where(sql<boolean>`(g.created_at, g.id) < (${createdAt}::timestamptz, ${id}::uuid)`);
  }
  const found = await q
    .orderBy('g.created_at', 'desc')
    .orderBy('g.id', 'desc')
    .limit(query.limit + 1)
    .execute();
  const rows = found.slice(0, query.limit).map(({ position_at, ...row }) => ({
    ...row,
    position: { createdAt: position_at, id: row.id },
  }));
  return { rows, hasMore: found.length > query.limit };
}

/**
 * Counts a key's queued+running generations, stopping at `cap`: enough to compare with the
 * cap, and bounded work however long the queue is.
 */
export async function countInFlight(db: Executor, apiKeyId: string, cap: number): Promise<number> {
  const row = await db
    .selectFrom((eb) =>
      eb
        .selectFrom('generations')
        .select('id')
        .where('api_key_id', '=', apiKeyId)
        .where('status', 'in', ['queued', 'running'])
        .limit(cap)
        .as('in_flight'),
    )
    .select(sql<number>`count(*)::int`.as('n'))
    .executeTakeFirstOrThrow();
  return row.n;
}

/** Queued generations across all keys, counted up to `cap`. */
export async function countQueued(db: Executor, cap: number): Promise<number> {
  const row = await db
    .selectFrom((eb) =>
      eb.selectFrom('generations').select('id').where('status', '=', 'queued').limit(cap).as('queued'),
    )
    .select(sql<number>`count(*)::int`.as('n'))
    .executeTakeFirstOrThrow();
  return row.n;
}
