// The usage ledger (usage_records, migration 0010): what each accelerator run cost. Workers write
// one row per attempt in the transaction that records the attempt's outcome; GET /v1/usage (and
// the accelerator-seconds quota) read it back, summed by UTC day or by model.
import { type Kysely, sql } from 'kysely';
import type { Database, NewUsageRecord } from './types.ts';

type Executor = Kysely<Database>;

/**
 * Records one attempt. An attempt is recorded once: a settlement repeated after a lost reply (or
 * a second outcome written for the same attempt) leaves the first row as it was.
 */
export async function recordUsage(db: Executor, record: NewUsageRecord): Promise<void> {
  await db
    .insertInto('usage_records')
    .values(record)
    .onConflict((oc) => oc.columns(['generation_id', 'attempt']).doNothing())
    .execute();
}

export type UsageGroupBy = 'day' | 'model';

export interface UsageQuery {
  /** One key's usage, or every key's (`all`). */
  apiKeyId: string | 'all';
  /** Inclusive. */
  from: Date;
  /** Exclusive. */
  to: Date;
  groupBy: UsageGroupBy;
}

export interface UsageCounters {
  /** Accelerator runs (every outcome). */
  attempts: number;
  /** Attempts that succeeded: each generation succeeds at most once, so these are generations. */
  generations: number;
  images: number;
  pixelSteps: number;
  acceleratorUs: number;
}

export type UsageGroup = UsageCounters & ({ day: string } | { model: string | null });

export interface UsageSummary {
  /** Ordered by day, or by model (null last); groups without usage are absent. */
  groups: UsageGroup[];
  total: UsageCounters;
}

interface SummaryRow {
  key: string | null;
  attempts: number;
  generations: number;
  images: number;
  pixel_steps: number;
  accelerator_us: number;
}

/**
 * The ledger summed over [from, to), by UTC day (YYYY-MM-DD) or by model. Sums come back as
 * bigint (parsed as numbers, db/connect.ts): exact up to 2^53, about 285 years of accelerator
 * microseconds.
 */
export async function usageSummary(db: Executor, query: UsageQuery): Promise<UsageSummary> {
  // The day is computed in SQL as text: a `date` would be parsed into a Date at local midnight.
  const key =
    query.groupBy === 'day'
      ? sql<string>`to_char(recorded_at at time zone 'UTC', 'YYYY-MM-DD')`
      : sql<string | null>`model`;
  let q = db
    .selectFrom('usage_records')
    .select([
      key.as('key'),
      sql<number>`count(*)::bigint`.as('attempts'),
      sql<number>`count(*) filter (where outcome = 'succeeded')::bigint`.as('generations'),
      sql<number>`coalesce(sum(images), 0)::bigint`.as('images'),
      sql<number>`coalesce(sum(pixel_steps), 0)::bigint`.as('pixel_steps'),
      sql<number>`coalesce(sum(accelerator_us), 0)::bigint`.as('accelerator_us'),
    ])
    .where('recorded_at', '>=', query.from)
    .where('recorded_at', '<', query.to);
  if (query.apiKeyId !== 'all') q = q.where('api_key_id', '=', query.apiKeyId);
  const rows: SummaryRow[] = await q.groupBy(sql`1`).orderBy(sql`1 asc nulls last`).execute();

  const total: UsageCounters = { attempts: 0, generations: 0, images: 0, pixelSteps: 0, acceleratorUs: 0 };
  const groups = rows.map((row): UsageGroup => {
    const counters: UsageCounters = {
      attempts: row.attempts,
      generations: row.generations,
      images: row.images,
      pixelSteps: row.pixel_steps,
      acceleratorUs: row.accelerator_us,
    };
    total.attempts += counters.attempts;
    total.generations += counters.generations;
    total.images += counters.images;
    total.pixelSteps += counters.pixelSteps;
    total.acceleratorUs += counters.acceleratorUs;
    return query.groupBy === 'day'
      ? { day: row.key as string, ...counters }
      : { model: row.key, ...counters };
  });
  return { groups, total };
}
