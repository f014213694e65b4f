import { type Kysely, sql } from 'kysely';

// Tenants (API keys) on a shared fleet: fair turns, metered usage, daily quotas.
//
// api_keys.weight: a key's share of the turns on a contended model queue (2 gets about twice the
// turns of 1). api_keys.images_per_day / accelerator_seconds_per_day: daily (UTC) limits checked
// when a generation is created; null is unlimited.
//
// fair_share: per model queue and key, the virtual finish time of the key's latest job (start-time
// fair queueing, see db/fair-queue.ts). A job's start time becomes its pg-boss priority (negated),
// so pg-boss's own fetch order (priority desc, created_on) is the fair order: no scheduler process.
// generations.fair_start keeps it on the row too.
//
// usage_records: the ledger of what each accelerator run cost, one row per attempt that ran on a
// worker, written in the transaction that records the attempt's outcome. It is the source of
// GET /v1/usage and of the accelerator-seconds quota; it keeps no foreign key to generations or
// api_keys so billing history outlives both.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('api_keys')
    .addColumn('weight', 'integer', (col) => col.notNull().defaultTo(1).check(sql`weight between 1 and 100`))
    .addColumn('images_per_day', 'integer', (col) => col.check(sql`images_per_day >= 0`))
    .addColumn('accelerator_seconds_per_day', 'integer', (col) =>
      col.check(sql`accelerator_seconds_per_day >= 0`),
    )
    .execute();

  await db.schema
    .createTable('fair_share')
    .addColumn('queue', 'text', (col) => col.notNull())
    .addColumn('api_key_id', 'uuid', (col) => col.notNull().references('api_keys.id').onDelete('cascade'))
    .addColumn('last_finish', 'bigint', (col) => col.notNull())
    .addColumn('updated_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('fair_share_pkey', ['queue', 'api_key_id'])
    .execute();
  // A generation's start in the fair order (its job's priority is −fair_start); null for rows
  // written outside it (before this migration, or by scripts). A key's latest queued start is one
  // probe of the index below, read on each create of the key.
  await db.schema.alterTable('generations').addColumn('fair_start', 'bigint').execute();
  await db.schema
    .createIndex('generations_key_queued_idx')
    .on('generations')
    .columns(['api_key_id', 'fair_start desc'])
    .where(sql<boolean>`status = 'queued' and fair_start is not null`)
    .execute();

  await db.schema
    .createTable('usage_records')
    .addColumn('id', 'bigint', (col) => col.primaryKey().generatedAlwaysAsIdentity())
    .addColumn('generation_id', 'uuid', (col) => col.notNull())
    .addColumn('attempt', 'integer', (col) => col.notNull())
    .addColumn('api_key_id', 'uuid', (col) => col.notNull())
    .addColumn('model', 'text')
    .addColumn('outcome', 'text', (col) =>
      col.notNull().check(sql`outcome in ('succeeded', 'failed', 'canceled', 'retry')`),
    )
    .addColumn('recorded_at', sql`timestamptz(3)`, (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('accelerator_us', 'bigint', (col) => col.notNull().check(sql`accelerator_us >= 0`))
    .addColumn('images', 'integer', (col) => col.notNull().check(sql`images >= 0`))
    .addColumn('pixel_steps', 'bigint', (col) => col.notNull().check(sql`pixel_steps >= 0`))
    // An attempt is recorded once, even if its settlement is retried after a lost reply.
    .addUniqueConstraint('usage_records_attempt_key', ['generation_id', 'attempt'])
    .execute();
  // One key's usage over a time range (GET /v1/usage, the accelerator quota).
  await db.schema
    .createIndex('usage_records_key_time_idx')
    .on('usage_records')
    .columns(['api_key_id', 'recorded_at'])
    .execute();
  // Every key's usage over a time range (admins).
  await db.schema.createIndex('usage_records_time_idx').on('usage_records').column('recorded_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('usage_records').execute();
  await db.schema.dropIndex('generations_key_queued_idx').execute();
  await db.schema.alterTable('generations').dropColumn('fair_start').execute();
  await db.schema.dropTable('fair_share').execute();
  await db.schema
    .alterTable('api_keys')
    .dropColumn('accelerator_seconds_per_day')
    .dropColumn('images_per_day')
    .dropColumn('weight')
    .execute();
}
