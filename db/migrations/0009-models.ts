import { type Kysely, sql } from 'kysely';

// Several models served at once. `models` is what the fleet serves: each worker announces the
// model it holds when it starts, and an operator can register one ahead of its workers or retire
// it. A generation names its model, and its job goes to that model's queue, so only workers
// holding it warm fetch it. Generations from before this have no model: they run on the default.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('models')
    .addColumn('id', 'text', (col) => col.primaryKey().check(sql`id ~ '^[a-z0-9][a-z0-9._-]{0,63}$'`))
    .addColumn('family', 'text', (col) => col.notNull())
    .addColumn('capabilities', 'jsonb', (col) => col.notNull())
    .addColumn('content_hash', 'text')
    .addColumn('created_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('announced_at', sql`timestamptz(3)`)
    .addColumn('retired_at', sql`timestamptz(3)`)
    .execute();
  // No foreign key to models: a row is written in the create batch's transaction, and the
  // model check happens before it (a retired model keeps its row, so nothing dangles).
  await db.schema.alterTable('generations').addColumn('model', 'text').execute();
  // Whether the worker translated the prompt (a model that reads its language natively is not).
  await db.schema.alterTable('generations').addColumn('translated', 'boolean').execute();
  await db.schema.alterTable('workers').addColumn('model_id', 'text').execute();
  // Queue position and queued counts per model: the queued rows of one model in creation order.
  await db.schema
    .createIndex('generations_model_queued_idx')
    .on('generations')
    .columns(['model', 'created_at', 'id'])
    .where(sql.ref('status'), '=', 'queued')
    .execute();
  // The recent run times of one model (its median job time and the queue ETA).
  await db.schema
    .createIndex('generations_model_succeeded_idx')
    .on('generations')
    .columns(['model', 'finished_at desc'])
    .where(sql.ref('status'), '=', 'succeeded')
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('generations_model_succeeded_idx').execute();
  await db.schema.dropIndex('generations_model_queued_idx').execute();
  await db.schema.alterTable('workers').dropColumn('model_id').execute();
  await db.schema.alterTable('generations').dropColumn('translated').execute();
  await db.schema.alterTable('generations').dropColumn('model').execute();
  await db.schema.dropTable('models').execute();
}
