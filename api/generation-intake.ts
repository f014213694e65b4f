// The create path without an Idempotency-Key: concurrent creates share one transaction (see
// batcher.ts). A batch costs the same five round trips whatever its size (BEGIN, admission
// counts, row insert, job insert, COMMIT), so under load the API no longer queues on Postgres
// round trips. Rows and jobs still commit together: a batch commits whole or not at all.
import type { PgBoss } from 'pg-boss';
import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import { admissionCounts, insertGenerations } from '../db/generations.repository.ts';
import { createQueueWaker, enqueueGenerations } from '../db/queue.ts';
import type { ApiKey, Generation, NewGeneration } from '../db/types.ts';
import { type AdmissionConfig, inFlightCap, queueFull, tooManyInFlight } from './admission.ts';
import { type BatcherOptions, createBatcher } from './batcher.ts';

export interface IntakeRequest {
  apiKey: ApiKey;
  row: NewGeneration & { id: string };
}

export type IntakeResult =
  | { ok: true; row: Generation; position: number }
  /** Refused by admission (an ApiError), or the create failed on its own (see runBatch). */
  | { ok: false; error: unknown };

export interface IntakeDeps {
  db: Db;
  boss: PgBoss;
  config: AdmissionConfig;
  logger?: Logger;
}

// One batch in flight at a time per API process. Every batch counts the queue (for admission and
// positions), so fewer, larger batches do less work; measured with the API bench on a 2-core box:
// 1 → 2,862 req/s, p99 32 ms; 2 → 2,522-2,616, p99 37-38; 4 → 1,835-2,143, p99 43-54; 8 → 1,652,
// p99 58. It also makes the positions one process hands out exact (no batch misses another's
// rows), and leaves the rest of the pool to reads, auth lookups and idempotent creates.
const CONCURRENCY = 1;
const MAX_BATCH = 100;

/** SQLSTATE classes 22 (data exception) and 23 (integrity constraint): this batch's data, not the server. */
function isDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('22') || code.startsWith('23'));
}

export function createGenerationIntake(
  deps: IntakeDeps,
  options: BatcherOptions = { concurrency: CONCURRENCY, maxBatch: MAX_BATCH },
): (request: IntakeRequest) => Promise<IntakeResult> {
  const waker = createQueueWaker(deps.db, (error) =>
    deps.logger?.warn({ err: error }, 'queue wake-up failed; workers will find the jobs on their next poll'),
  );

  async function admitAndInsert(trx: Db, items: readonly IntakeRequest[]): Promise<IntakeResult[]> {
    const caps = new Map(items.map((item) => [item.apiKey.id, inFlightCap(item.apiKey, deps.config)]));
    const counts = await admissionCounts(
      trx,
      [...caps].map(([id, cap]) => ({ id, cap })),
      deps.config.MAX_QUEUED,
    );
    // Admitted in arrival order, each seeing the ones admitted before it in this batch.
    let queued = counts.queued;
    const results: (IntakeResult | undefined)[] = items.map((item) => {
      const cap = caps.get(item.apiKey.id) as number;
      const inFlight = counts.inFlight.get(item.apiKey.id) ?? 0;
      if (inFlight >= cap) return { ok: false, error: tooManyInFlight(cap) };
      if (queued >= deps.config.MAX_QUEUED) return { ok: false, error: queueFull() };
      counts.inFlight.set(item.apiKey.id, inFlight + 1);
      queued++;
      return undefined;
    });
    const admitted = items.filter((_, i) => results[i] === undefined);
    const rows = await insertGenerations(
      trx,
      admitted.map((item) => item.row),
    );
    await enqueueGenerations(
      deps.boss,
      trx,
      rows.map((row) => row.id),
    );
    // Rows of one transaction share created_at, so a read orders them by id after every row
    // queued before (queuePosition); ranking them the same way gives the position a read will.
    // counts.queued is exact here: admission refuses everything once it reaches its cap.
    const byId = new Map(
      [...rows]
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        .map((row, rank) => [row.id, { row, position: counts.queued + rank }]),
    );
    return items.map((item, i) => {
      const refused = results[i];
      if (refused) return refused;
      const created = byId.get(item.row.id);
      if (!created) throw new Error(`generation ${item.row.id} was not inserted`);
      return { ok: true, ...created };
    });
  }

  const inTransaction = (items: readonly IntakeRequest[]) =>
    deps.db.transaction().execute((trx) => admitAndInsert(trx, items));

  async function runBatch(items: readonly IntakeRequest[]): Promise<IntakeResult[]> {
    let results: IntakeResult[];
    try {
      results = await inTransaction(items);
    } catch (error) {
      // One bad row must not fail the creates it happened to share a transaction with: retry each
      // alone. Anything else (Postgres unreachable) fails them all, at once.
      if (items.length === 1 || !isDataError(error)) throw error;
      results = await Promise.all(
        items.map((item) =>
          inTransaction([item]).then(
            ([result]) => result as IntakeResult,
            (alone: unknown): IntakeResult => ({ ok: false, error: alone }),
          ),
        ),
      );
    }
    return results;
  }

  const submit = createBatcher(runBatch, options);
  return async (request) => {
    const result = await submit(request);
    // Answered once workers have been told, outside the batch so its connection is free.
    if (result.ok) await waker.poke();
    return result;
  };
}
