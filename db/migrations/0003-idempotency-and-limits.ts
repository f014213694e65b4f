import { type Kysely, sql } from 'kysely';

// Idempotency keys live in their own table rather than on generations: a key may be reused
// after 24 h (its entry is then re-pointed at the new generation), which a unique index on
// generations could not allow without rewriting the old row.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('idempotency_keys')
    .addColumn('api_key_id', 'uuid', (c) => c.notNull().references('api_keys.id').onDelete('cascade'))
    .addColumn('key', 'text', (c) => c.notNull())
    /** SHA-256 of the canonical validated request body. */
    .addColumn('request_hash', 'text', (c) => c.notNull())
    .addColumn('generation_id', 'uuid', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    // The claim is written first in the create transaction (so a duplicate waits on it before
    // doing any work); the generations row follows in the same transaction, hence deferred.
    .addPrimaryKeyConstraint('idempotency_keys_pkey', ['api_key_id', 'key'])
    .addForeignKeyConstraint(
      'idempotency_keys_generation_fk',
      ['generation_id'],
      'generations',
      ['id'],
      (fk) => fk.onDelete('cascade').deferrable().initiallyDeferred(),
    )
    .execute();

  // null: the key uses the server default (MAX_IN_FLIGHT_PER_KEY).
  await db.schema
    .alterTable('api_keys')
    .addColumn('max_in_flight', 'integer', (c) => c.check(sql`max_in_flight >= 1`))
    .execute();

  // The per-key in-flight count on every create.
  await db.schema
    .createIndex('generations_in_flight_idx')
    .on('generations')
    .column('api_key_id')
    .where(sql<boolean>`status in ('queued', 'running')`)
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('generations_in_flight_idx').execute();
  await db.schema.alterTable('api_keys').dropColumn('max_in_flight').execute();
  await db.schema.dropTable('idempotency_keys').execute();
}
