import { type Kysely, sql } from 'kysely';

// Webhooks (Standard Webhooks). Every API key gets a signing secret `whsec_<base64>`; rotation
// keeps the previous one valid until webhook_secret_previous_expires_at (both signatures are sent
// meanwhile). A generation may name a webhook_url and the event types it wants; every status
// change it asked for becomes a webhook_events row (its id is the stable `webhook-id`), written in
// the same transaction as the status change, and every attempt to deliver it a webhook_deliveries row.

// 32 random bytes from two v4 UUIDs (244 random bits): built in since Postgres 13, no pgcrypto.
const NEW_SECRET = sql`'whsec_' || encode(decode(replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', ''), 'hex'), 'base64')`;

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('api_keys')
    .addColumn('webhook_secret', 'text', (c) => c.notNull().defaultTo(NEW_SECRET))
    .addColumn('webhook_secret_previous', 'text')
    .addColumn('webhook_secret_previous_expires_at', 'timestamptz')
    .execute();

  await db.schema
    .alterTable('generations')
    .addColumn('webhook_url', 'text')
    .addColumn('webhook_events', sql`text[]`)
    .execute();

  await db.schema
    .createTable('webhook_events')
    // `evt_<uuid>`: sent as `webhook-id`, the same on every attempt, so receivers can deduplicate.
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('generation_id', 'uuid', (c) => c.notNull().references('generations.id').onDelete('cascade'))
    .addColumn('api_key_id', 'uuid', (c) => c.notNull().references('api_keys.id').onDelete('cascade'))
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('url', 'text', (c) => c.notNull())
    // The generations row as it was at the status change; output URLs are presigned at send time.
    .addColumn('snapshot', 'jsonb', (c) => c.notNull())
    .addColumn('status', 'text', (c) =>
      c.notNull().defaultTo('pending').check(sql`status in ('pending', 'delivered', 'failed', 'disabled')`),
    )
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('delivered_at', 'timestamptz')
    .execute();
  await db.schema
    .createIndex('webhook_events_generation_idx')
    .on('webhook_events')
    .column('generation_id')
    .execute();
  await db.schema
    .createIndex('webhook_events_pending_idx')
    .on('webhook_events')
    .columns(['api_key_id', 'url'])
    .where(sql.ref('status'), '=', 'pending')
    .execute();

  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('event_id', 'text', (c) => c.notNull().references('webhook_events.id').onDelete('cascade'))
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('attempt', 'integer', (c) => c.notNull())
    .addColumn('status_code', 'integer')
    .addColumn('latency_ms', 'integer', (c) => c.notNull())
    .addColumn('error', 'text')
    .addColumn('response_body', 'text')
    .addColumn('next_attempt_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema
    .createIndex('webhook_deliveries_event_idx')
    .on('webhook_deliveries')
    .columns(['event_id', 'created_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('webhook_deliveries').execute();
  await db.schema.dropTable('webhook_events').execute();
  await db.schema.alterTable('generations').dropColumn('webhook_url').dropColumn('webhook_events').execute();
  await db.schema
    .alterTable('api_keys')
    .dropColumn('webhook_secret')
    .dropColumn('webhook_secret_previous')
    .dropColumn('webhook_secret_previous_expires_at')
    .execute();
}
