// Generations accepted before the service had several models have no model, and their jobs sit in
// the single queue of that time (LEGACY_GENERATION_QUEUE), which no worker of this version fetches.
// Adoption moves each waiting one to a model's queue: its row gets the model, its job is re-sent to
// that model's queue with the same id, and the old job is deleted, in one transaction, so a job is
// never in both queues or in neither. A legacy job a worker holds (active) is left to finish where
// it is; should it fail back to waiting, a later pass adopts it. Safe to run from several API
// processes at once (rows are locked, skipped when another process has them).
import { sql } from 'kysely';
import { fromKysely, type PgBoss } from 'pg-boss';
import type { Db } from './connect.ts';
import { enqueueGenerations, LEGACY_GENERATION_QUEUE, PGBOSS_SCHEMA } from './queue.ts';

/** Adopts up to `limit` waiting legacy generations into `model`'s queue; returns how many. */
export async function adoptLegacyGenerations(
  db: Db,
  boss: PgBoss,
  model: string,
  limit = 500,
): Promise<number> {
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{ id: string }>`
      select g.id from generations g
      join ${sql.table(`${PGBOSS_SCHEMA}.job`)} j on j.name = ${LEGACY_GENERATION_QUEUE} and j.id = g.id
      where g.model is null and g.status = 'queued' and j.state in ('created', 'retry')
      order by g.created_at, g.id
      limit ${limit}
      for update of g skip locked`.execute(trx);
    if (rows.length === 0) return 0;
    const ids = rows.map((row) => row.id);
    await trx.updateTable('generations').set({ model }).where('id', 'in', ids).execute();
    await enqueueGenerations(
      boss,
      trx,
      ids.map((id) => ({ id, model })),
    );
    await boss.deleteJob(LEGACY_GENERATION_QUEUE, ids, { db: fromKysely(trx) });
    return ids.length;
  });
}
