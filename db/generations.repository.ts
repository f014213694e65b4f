import { type Kysely, sql } from 'kysely';
import { queuePositionSql } from './fair-queue.ts';
import type {
  Database,
  Generation,
  GenerationStatus,
  NewGeneration,
  StageTimingsRecord,
  StoredOutput,
} from './types.ts';

type Executor = Kysely<Database>;

/**
 * API processes LISTEN here to answer `Prefer: wait` requests and feed event streams; the payload
 * is the generation id. Sent on every status change: claimed (running), requeued, and terminal.
 */
export const GENERATION_STATUS_CHANNEL = 'easel_generation_status';

/**
 * Tells listening API processes that a generation's status changed. Inside a transaction
 * Postgres delivers it on commit, so a listener never sees a status it cannot read.
 */
export async function notifyStatusChange(db: Executor, id: string): Promise<void> {
  await sql`select pg_notify(${GENERATION_STATUS_CHANNEL}, ${id})`.execute(db);
}

/** Workers LISTEN here: a client asked to cancel the running generation whose id is the payload. */
export const GENERATION_CANCEL_CHANNEL = 'easel_generation_cancel';

/**
 * Sent with every persisted progress write (payload: the generation id), for anything that
 * follows progress live without polling (bounded by the worker's write rate, ≤ 4 per second).
 */
export const GENERATION_PROGRESS_CHANNEL = 'easel_generation_progress';

export async function insertGeneration(db: Executor, row: NewGeneration): Promise<Generation> {
  return db.insertInto('generations').values(row).returningAll().executeTakeFirstOrThrow();
}

/** Several rows in one statement (the batched create path); returned in no particular order. */
export async function insertGenerations(db: Executor, rows: readonly NewGeneration[]): Promise<Generation[]> {
  if (rows.length === 0) return [];
  return db
    .insertInto('generations')
    .values([...rows])
    .returningAll()
    .execute();
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
 * How many generations of the same model (all owners) pg-boss will fetch before this one: 0 means
 * next. The fair order (db/fair-queue.ts), read from the jobs' priorities, not pg-boss's cached
 * statistics.
 */
export async function queuePosition(db: Executor, generation: Pick<Generation, 'id' | 'model' | 'status'>) {
  const row = await db
    .selectFrom('generations as g')
    .select(queuePositionSql('g').as('ahead'))
    .where('g.id', '=', generation.id)
    .executeTakeFirst();
  return row?.ahead ?? 0;
}

/**
 * Claims the row for an attempt, and NOTIFYs GENERATION_STATUS_CHANNEL in the same statement (no
 * extra round trip on the claim). Returns undefined when the generation is gone or already
 * ended (canceled while queued, or finished by an earlier attempt that crashed before acking),
 * or when a cancel was requested (then `markCanceled` ends it): in all these cases the job must
 * not run.
 */
export async function markRunning(
  db: Executor,
  id: string,
  workerId: string | null = null,
): Promise<Generation | undefined> {
  const claimed = await db
    .with('claimed', (qb) =>
      qb
        .updateTable('generations')
        .set({
          status: 'running',
          started_at: sql`now()`,
          attempts: sql`attempts + 1`,
          error_code: null,
          error_message: null,
          progress_step: null,
          progress_total: null,
          step_ms: null,
          worker_id: workerId,
          updated_at: sql`now()`,
        })
        .where('id', '=', id)
        .where('status', 'in', ['queued', 'running'])
        .where('cancel_requested_at', 'is', null)
        .returningAll(),
    )
    .selectFrom('claimed')
    .selectAll()
    .select(sql<string>`pg_notify(${GENERATION_STATUS_CHANNEL}, claimed.id::text)`.as('notified'))
    .executeTakeFirst();
  if (!claimed) return undefined;
  const { notified: _, ...row } = claimed;
  return row;
}

export interface ProgressRecord {
  step: number;
  total: number;
  /** Moving average of the measured step time; null until a step has been timed. */
  stepMs: number | null;
}

/**
 * Persists the running attempt's progress and NOTIFYs GENERATION_PROGRESS_CHANNEL, in one round
 * trip. Answers whether a cancel has been requested meanwhile (so a worker that missed the cancel
 * NOTIFY still stops), or undefined when the row is no longer running.
 */
export async function recordProgress(
  db: Executor,
  id: string,
  progress: ProgressRecord,
): Promise<{ cancelRequested: boolean } | undefined> {
  const { rows } = await sql<{ cancel_requested: boolean }>`
    with updated as (
      update generations
      set progress_step = ${progress.step}, progress_total = ${progress.total},
        step_ms = ${progress.stepMs}, updated_at = now()
      where id = ${id} and status = 'running'
      returning id, cancel_requested_at
    )
    select cancel_requested_at is not null as cancel_requested,
      pg_notify(${GENERATION_PROGRESS_CHANNEL}, id::text)
    from updated`.execute(db);
  const row = rows[0];
  return row ? { cancelRequested: row.cancel_requested } : undefined;
}

/** Whether a cancel was requested for the generation (for a worker whose LISTEN was down). */
export async function isCancelRequested(db: Executor, id: string): Promise<boolean> {
  const row = await db
    .selectFrom('generations')
    .select('cancel_requested_at')
    .where('id', '=', id)
    .executeTakeFirst();
  return row?.cancel_requested_at != null;
}

/**
 * The worker's end of a cancel: a generation whose cancel was requested (while it ran, or
 * before a retry claimed it) becomes canceled. Notifies `Prefer: wait` listeners.
 */
export async function markCanceled(db: Executor, id: string): Promise<Generation | undefined> {
  const row = await db
    .updateTable('generations')
    .set({ status: 'canceled', finished_at: sql`now()`, updated_at: sql`now()` })
    .where('id', '=', id)
    .where('status', 'in', ['queued', 'running'])
    .where('cancel_requested_at', 'is not', null)
    .returningAll()
    .executeTakeFirst();
  if (row) await notifyStatusChange(db, id);
  return row;
}

export type CancelOutcome =
  /** Was queued: canceled at once; the caller must also cancel the queue job (same transaction). */
  | { kind: 'canceled'; row: Generation }
  /** Is running: the request is recorded and the workers are told; the worker ends it. */
  | { kind: 'requested'; row: Generation }
  /** Canceled before: nothing changes. */
  | { kind: 'already_canceled'; row: Generation }
  /** Succeeded or failed: too late to cancel. */
  | { kind: 'finished'; row: Generation }
  | { kind: 'not_found' };

/**
 * A client's cancel. Run it in a transaction: the row is locked so the decision cannot race a
 * worker claiming or finishing it, and the NOTIFYs go out on commit.
 */
export async function requestCancel(db: Executor, id: string, apiKeyId: string): Promise<CancelOutcome> {
  const current = await db
    .selectFrom('generations')
    .select(['id', 'status'])
    .where('id', '=', id)
    .where('api_key_id', '=', apiKeyId)
    .forUpdate()
    .executeTakeFirst();
  if (!current) return { kind: 'not_found' };
  if (current.status === 'queued') {
    const row = await db
      .updateTable('generations')
      .set({
        status: 'canceled',
        cancel_requested_at: sql`now()`,
        finished_at: sql`now()`,
        updated_at: sql`now()`,
      })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await notifyStatusChange(db, id);
    return { kind: 'canceled', row };
  }
  if (current.status === 'running') {
    const row = await db
      .updateTable('generations')
      .set({ cancel_requested_at: sql`coalesce(cancel_requested_at, now())`, updated_at: sql`now()` })
      .where('id', '=', id)
      .returningAll()
      .executeTakeFirstOrThrow();
    await sql`select pg_notify(${GENERATION_CANCEL_CHANNEL}, ${id})`.execute(db);
    return { kind: 'requested', row };
  }
  const row = await db.selectFrom('generations').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  return current.status === 'canceled' ? { kind: 'already_canceled', row } : { kind: 'finished', row };
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
    .set({
      prompt_en: promptEn,
      negative_prompt_en: negativePromptEn,
      translated: true,
      updated_at: sql`now()`,
    })
    .where('id', '=', id)
    .execute();
}

export interface SuccessRecord {
  /** Whether the prompts were translated to English before encoding. */
  translated: boolean;
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
      translated: result.translated,
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
  const result = await db
    .updateTable('generations')
    .set({
      status: 'queued',
      started_at: null,
      progress_step: null,
      progress_total: null,
      step_ms: null,
      updated_at: sql`now()`,
    })
    .where('id', '=', id)
    .where('status', '=', 'running')
    .executeTakeFirst();
  if (result.numUpdatedRows > 0n) await notifyStatusChange(db, id);
  return result;
}

/** A position in the newest-first listing: rows after it are strictly older in (created_at, id). */
export interface ListPosition {
  /**
   * created_at as an ISO instant in UTC: exactly as stored, because generations' timestamps are
   * stored to the millisecond (migration 0008), the precision of a Date and of the resource.
   */
  createdAt: string;
  id: string;
}

export interface ListGenerationsQuery {
  apiKeyId: string;
  limit: number;
  statuses?: readonly GenerationStatus[];
  /** Exclusive bounds on created_at (ISO 8601, within what Postgres's timestamptz accepts). */
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
    .select([queuePositionSql('g').as('queue_position')])
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
  const rows = found.slice(0, query.limit).map((row) => ({
    ...row,
    position: { createdAt: row.created_at.toISOString(), id: row.id },
  }));
  return { rows, hasMore: found.length > query.limit };
}

/** Inputs of the queue ETA, from our own table (see shared/eta.ts). */
export interface QueueEstimateInputs {
  /** Mean run time (started → finished) of the last RECENT_RUNS succeeded generations; null without any. */
  avgRunMs: number | null;
  /** Live workers of the model: heartbeating in the registry within a minute, not stopped. */
  workers: number;
}

const RECENT_RUNS = 20;

/**
 * One model's inputs (null: generations from before models existed, any worker). Live workers are
 * those holding the model in the registry (heartbeat within a minute) and not stopped.
 */
export async function queueEstimateInputs(db: Executor, model: string | null): Promise<QueueEstimateInputs> {
  const sameModel = model === null ? sql`model is null` : sql`model = ${model}`;
  const { rows } = await sql<{ avg_run_ms: number | null; workers: number }>`
    select
      (select avg(extract(epoch from (r.finished_at - r.started_at)) * 1000)::float8
        from (select finished_at, started_at from generations
              where status = 'succeeded' and started_at is not null and ${sameModel}
              order by finished_at desc limit ${RECENT_RUNS}) r) as avg_run_ms,
      (select count(*)::int from workers
        where stopped_at is null and last_heartbeat_at > now() - interval '1 minute'
          and ${model === null ? sql`true` : sql`model_id = ${model}`}) as workers`.execute(db);
  const row = rows[0];
  return { avgRunMs: row?.avg_run_ms ?? null, workers: row?.workers ?? 0 };
}

export interface AdmissionCounts {
  /** Queued generations across all keys, counted up to the cap asked for. */
  queued: number;
  /** Per API key id: its queued+running generations, counted up to that key's cap. */
  inFlight: Map<string, number>;
}

/**
 * For admission: queued generations across all keys, and each key's queued+running ones, in one
 * round trip. Each count stops at its cap, so the work is bounded however long the queue is.
 */
export async function admissionCounts(
  db: Executor,
  keys: readonly { id: string; cap: number }[],
  queuedCap: number,
): Promise<AdmissionCounts> {
  const { rows } = await sql<{ queued: number; in_flight: Record<string, number> | null }>`
    select
      (select count(*)::int from (
        select 1 from generations where status = 'queued' limit ${queuedCap}) q) as queued,
      (select json_object_agg(k.id, (
        select count(*)::int from (
          select 1 from generations g
          where g.api_key_id = k.id and g.status in ('queued', 'running') limit k.cap) f))
        from unnest(${keys.map((k) => k.id)}::uuid[], ${keys.map((k) => k.cap)}::int[]) as k(id, cap)
      ) as in_flight`.execute(db);
  const row = rows[0];
  return { queued: row?.queued ?? 0, inFlight: new Map(Object.entries(row?.in_flight ?? {})) };
}

/**
 * Rows per status, for the /metrics gauge. Still a pass over every row, as an index-only scan of
 * generations_status_idx (migration 0006) once vacuum has run, else a sequential scan: about
 * 110 ms per 300k rows on a small machine, so the caller bounds it.
 */
export async function countGenerationsByStatus(db: Executor): Promise<Map<GenerationStatus, number>> {
  const rows = await db
    .selectFrom('generations')
    .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('status')
    .execute();
  return new Map(rows.map((row) => [row.status, Number(row.n)]));
}
