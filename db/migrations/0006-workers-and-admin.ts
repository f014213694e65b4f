import { type Kysely, sql } from 'kysely';

// workers: one row per worker process, upserted at boot and refreshed by its heartbeat, so
// operators (GET /v1/workers, /metrics) see which models and provider each GPU serves, what it
// runs now and when it was last heard from. A worker that stops cleanly sets stopped_at; one
// that crashes simply stops heartbeating.
// api_keys.admin: an operator key may see fleet-wide views (workers); it still sees only its own
// generations.
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('workers')
    .addColumn('id', 'text', (col) => col.primaryKey())
    .addColumn('hostname', 'text', (col) => col.notNull())
    .addColumn('pid', 'integer', (col) => col.notNull())
    .addColumn('provider', 'text', (col) => col.notNull())
    .addColumn('model', 'jsonb', (col) => col.notNull())
    .addColumn('translator', 'jsonb')
    .addColumn('current_generation_id', 'uuid')
    .addColumn('jobs_succeeded', 'bigint', (col) => col.notNull().defaultTo(0))
    .addColumn('jobs_failed', 'bigint', (col) => col.notNull().defaultTo(0))
    .addColumn('started_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('last_heartbeat_at', 'timestamptz', (col) => col.notNull().defaultTo(sql`now()`))
    .addColumn('stopped_at', 'timestamptz')
    .execute();
  await db.schema
    .alterTable('api_keys')
    .addColumn('admin', 'boolean', (col) => col.notNull().defaultTo(false))
    .execute();
  // /metrics counts generations by status on every scrape: an index-only scan instead of the heap.
  await db.schema.createIndex('generations_status_idx').on('generations').column('status').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('generations_status_idx').execute();
  await db.schema.alterTable('api_keys').dropColumn('admin').execute();
  await db.schema.dropTable('workers').execute();
}
