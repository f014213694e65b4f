import { type Kysely, sql } from 'kysely';

// Generations' timestamps to the millisecond. The API shows them (created_at, started_at, …) as
// ISO strings with milliseconds, clients filter and page on them (created_after, cursors), and
// a JS Date holds no more: stored to the microsecond, `created_after=<a generation's own
// created_at>` still listed that generation, because the stored value was a fraction of a
// millisecond later than the one shown. Now what the API shows is what it stores and compares.
// Existing values are rounded to the nearest millisecond (rows may then tie: listings and queue
// positions break ties by id). One ALTER, so one rewrite of the table and its indexes; it holds an
// exclusive lock while it runs (seconds per million rows).
const COLUMNS = ['created_at', 'started_at', 'finished_at', 'updated_at', 'cancel_requested_at'];

const alterAll = (type: string) =>
  sql.raw(`alter table generations ${COLUMNS.map((c) => `alter column ${c} type ${type}`).join(', ')}`);

export async function up(db: Kysely<unknown>): Promise<void> {
  await alterAll('timestamptz(3)').execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await alterAll('timestamptz').execute(db);
}
