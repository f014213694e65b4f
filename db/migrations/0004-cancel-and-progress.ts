import { type Kysely, sql } from 'kysely';

// cancel_requested_at: a client asked to cancel while the generation ran; the worker stops at its
// next denoising step and ends the row as canceled (it also checks this column when claiming a
// row and on every progress write, in case the NOTIFY was lost).
// progress_step/progress_total/step_ms: the running attempt's last persisted denoising step and
// its moving-average step time (for the ETA); kept after the generation ends.
// worker_id: which worker ran the attempt (diagnostics, and counting live workers for queue ETAs).
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('generations')
    .addColumn('cancel_requested_at', 'timestamptz')
    .addColumn('progress_step', 'integer')
    .addColumn('progress_total', 'integer')
    .addColumn('step_ms', 'double precision')
    .addColumn('worker_id', 'text')
    .execute();

  // The queue ETA averages the most recently succeeded generations.
  await db.schema
    .createIndex('generations_succeeded_finished_idx')
    .on('generations')
    .column('finished_at desc')
    .where(sql.ref('status'), '=', 'succeeded')
    .execute();
  // ...and counts the workers that started a generation in the last few minutes.
  await db.schema
    .createIndex('generations_started_idx')
    .on('generations')
    .column('started_at')
    .where(sql.ref('started_at'), 'is not', null)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('generations_started_idx').execute();
  await db.schema.dropIndex('generations_succeeded_finished_idx').execute();
  await db.schema
    .alterTable('generations')
    .dropColumn('cancel_requested_at')
    .dropColumn('progress_step')
    .dropColumn('progress_total')
    .dropColumn('step_ms')
    .dropColumn('worker_id')
    .execute();
}
