import { type Kysely, sql } from 'kysely';

// webhook_disabled_urls: a receiver that answers 410 Gone retires its URL for the API key whose
// event it was. Every later event of that key to that URL (the same generation's next event, later
// generations) is skipped, not sent, until the key re-enables the URL (deleting the row). The row
// is consulted when an event is written and again by the sender just before each attempt (an event
// written before the 410 arrived).
// webhook_deliveries.outcome: what became of each attempt, the same word as the sender's log line
// and metric label: delivered, retry, exhausted (a retryable failure with no attempt left), gone,
// rejected, forbidden, skipped_disabled (nothing sent: the URL is disabled).
const OUTCOMES = ['delivered', 'retry', 'exhausted', 'gone', 'rejected', 'forbidden', 'skipped_disabled'];

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('webhook_disabled_urls')
    .addColumn('id', 'uuid', (c) => c.primaryKey().defaultTo(sql`gen_random_uuid()`))
    .addColumn('api_key_id', 'uuid', (c) => c.notNull().references('api_keys.id').onDelete('cascade'))
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('event_id', 'text', (c) => c.references('webhook_events.id').onDelete('set null'))
    .addColumn('disabled_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    // Also the index of the per-event lookup (key, url).
    .addUniqueConstraint('webhook_disabled_urls_key_url', ['api_key_id', 'url'])
    .execute();

  await db.schema.alterTable('webhook_deliveries').addColumn('outcome', 'text').execute();
  // Rows written before this migration: the outcome their status code and error imply.
  await sql`
    update webhook_deliveries set outcome = case
      when status_code between 200 and 299 then 'delivered'
      when status_code = 410 then 'gone'
      when status_code is null
        and (error like 'webhook URL %' or error like '%forbidden address%' or error like '%: no address')
        then 'forbidden'
      when status_code is null or status_code in (408, 429) or status_code >= 500 then
        case when next_attempt_at is null then 'exhausted' else 'retry' end
      else 'rejected'
    end`.execute(db);
  await db.schema
    .alterTable('webhook_deliveries')
    .alterColumn('outcome', (c) => c.setNotNull())
    .execute();
  await db.schema
    .alterTable('webhook_deliveries')
    .addCheckConstraint(
      'webhook_deliveries_outcome_check',
      sql`outcome in (${sql.join(OUTCOMES.map((o) => sql.lit(o)))})`,
    )
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('webhook_deliveries').dropColumn('outcome').execute();
  await db.schema.dropTable('webhook_disabled_urls').execute();
}
