// What counts against a key's daily quotas (api_keys.images_per_day, accelerator_seconds_per_day),
// read in the create transaction after the key's lock (db/fair-queue.ts lockForCreate), so two
// creates of one key — in any API process — never both take the last images of the day.
import { type Kysely, sql } from 'kysely';
import type { Database } from './types.ts';

type Executor = Kysely<Database>;

export interface QuotaUse {
  /** Images of generations created today (UTC) that are queued, running or succeeded. */
  images: number;
  /** Accelerator time recorded in the usage ledger today (UTC), in microseconds. */
  acceleratorUs: number;
}

export interface QuotaDay {
  use: Map<string, QuotaUse>;
  /** The next 00:00 UTC by the database's clock: when the counts start again. */
  resetsAt: Date;
  /** The database's clock (the transaction's start). */
  now: Date;
}

/**
 * Today's use of each key, in one round trip. A generation that failed or was canceled gives its
 * images back; accelerator time, once spent, is not given back.
 */
export async function quotaDay(db: Executor, apiKeyIds: readonly string[]): Promise<QuotaDay> {
  const { rows } = await sql<{
    now: Date;
    resets_at: Date;
    use: Record<string, { images: number; accelerator_us: number }> | null;
  }>`
    with day as (select date_trunc('day', now() at time zone 'UTC') at time zone 'UTC' as start)
    select now() as now, (select start from day) + interval '1 day' as resets_at,
      (select json_object_agg(k.id, json_build_object(
        'images', (select coalesce(sum(g.num_images), 0)::int from generations g
                   where g.api_key_id = k.id and g.created_at >= (select start from day)
                     and g.status in ('queued', 'running', 'succeeded')),
        'accelerator_us', (select coalesce(sum(u.accelerator_us), 0)::float8 from usage_records u
                   where u.api_key_id = k.id and u.recorded_at >= (select start from day))))
       from unnest(${[...apiKeyIds]}::uuid[]) as k(id)) as use`.execute(db);
  const row = rows[0];
  if (!row) throw new Error('quotaDay returned no row');
  const use = new Map(
    Object.entries(row.use ?? {}).map(([id, value]) => [
      id,
      { images: value.images, acceleratorUs: value.accelerator_us },
    ]),
  );
  return { use, resetsAt: row.resets_at, now: row.now };
}
