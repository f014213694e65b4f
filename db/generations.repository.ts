import { type Kysely, sql } from 'kysely';
import type { Database, Generation, NewGeneration, StageTimingsRecord, StoredOutput } from './types.ts';

type Executor = Kysely<Database>;

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

export interface SuccessRecord {
  outputs: StoredOutput[];
  timings: StageTimingsRecord;
  scheduler: string;
  promptTruncated: boolean;
}

export async function markSucceeded(db: Executor, id: string, result: SuccessRecord) {
  return db
    .updateTable('generations')
    .set({
      status: 'succeeded',
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
}

export async function markFailed(db: Executor, id: string, error: { code: string; message: string }) {
  return db
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
