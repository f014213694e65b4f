// The create path: concurrent creates share one transaction (see batcher.ts). A batch costs the
// same round trips whatever its size: BEGIN, the per-key locks, admission counts (with today's
// quota use when a key has quotas), the fair starts read, rows with the keys' new finishes, jobs,
// COMMIT; plus one or two per Idempotency-Key it claims. So under load the API does not queue on
// Postgres round trips. Rows, jobs and key claims commit together: a batch commits whole or not at
// all. Once committed, the workers are woken and the batch's queue positions read, off the
// batch's slot, so the next batch and the workers do not wait for them.
import type { PgBoss } from 'pg-boss';
import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import { enqueueFairly, fairQueuePositions, lockForCreate, rebaseFairQueue } from '../db/fair-queue.ts';
import { admissionCounts } from '../db/generations.repository.ts';
import {
  claimIdempotencyKey,
  type IdempotencyClaim,
  releaseIdempotencyKeys,
} from '../db/idempotency-keys.repository.ts';
import { createQueueWaker, generationQueue } from '../db/queue.ts';
import { quotaDay } from '../db/quotas.repository.ts';
import type { ApiKey, Generation, NewGeneration } from '../db/types.ts';
import {
  type AdmissionConfig,
  hasQuota,
  inFlightCap,
  queueFull,
  quotaRefusal,
  tooManyInFlight,
} from './admission.ts';
import { type BatcherOptions, createBatcher } from './batcher.ts';

export interface IntakeRequest {
  apiKey: ApiKey;
  row: NewGeneration & { id: string };
  /** The request's Idempotency-Key and the hash of its body, when it sent one. */
  idempotency?: { key: string; requestHash: string };
}

type Replayed = Extract<IdempotencyClaim, { claimed: false }>['existing'];

/** A create committed in a batch; its position is known when its queue was idle, else read after. */
type Created = { ok: true; row: Generation; position?: number };

/** A batch's outcome per create, before the created ones' positions are read (after the commit). */
type BatchResult =
  | { ok: true; row: Generation; positions: Promise<Map<string, number>> }
  | Exclude<IntakeResult, { row: Generation }>;

export type IntakeResult =
  | { ok: true; row: Generation; position: number }
  /** The Idempotency-Key was claimed before (maybe earlier in the same batch): answer with that. */
  | { ok: true; replayOf: Replayed }
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
// rows), and leaves the rest of the pool to reads and auth lookups.
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

  async function admitAndInsert(
    trx: Db,
    items: readonly IntakeRequest[],
    rebaseAfterCommit: string[],
  ): Promise<(IntakeResult | Created)[]> {
    // Keys first, in arrival order: a replay is answered whatever the caps say. A duplicate later
    // in the same batch sees the earlier claim (same transaction) and becomes its replay.
    const results: (Exclude<IntakeResult, { row: Generation }> | undefined)[] = [];
    for (const item of items) {
      if (!item.idempotency) {
        results.push(undefined);
        continue;
      }
      const claim = await claimIdempotencyKey(trx, {
        apiKeyId: item.apiKey.id,
        key: item.idempotency.key,
        requestHash: item.idempotency.requestHash,
        generationId: item.row.id,
      });
      results.push(claim.claimed ? undefined : { ok: true, replayOf: claim.existing });
    }

    const pending = items.filter((_, i) => results[i] === undefined);
    // Per key, across API processes: quota counts and turn order must see the key's other creates.
    await lockForCreate(
      trx,
      pending.map((item) => item.apiKey.id),
      pending.map((item) => item.row.model ?? null),
    );
    const caps = new Map(pending.map((item) => [item.apiKey.id, inFlightCap(item.apiKey, deps.config)]));
    const quotaKeys = [
      ...new Set(pending.filter((item) => hasQuota(item.apiKey)).map((item) => item.apiKey.id)),
    ];
    const [counts, quota] = await Promise.all([
      admissionCounts(
        trx,
        [...caps].map(([id, cap]) => ({ id, cap })),
        deps.config.MAX_QUEUED,
      ),
      quotaKeys.length > 0 ? quotaDay(trx, quotaKeys) : undefined,
    ]);
    // Admitted in arrival order, each seeing the ones admitted before it in this batch.
    let queued = counts.queued;
    const refused = new Map<string, IntakeResult>();
    for (const item of pending) {
      const cap = caps.get(item.apiKey.id) as number;
      const inFlight = counts.inFlight.get(item.apiKey.id) ?? 0;
      const use = quota?.use.get(item.apiKey.id);
      // The quota first: it holds until 00:00 UTC, while the other two clear as work finishes.
      const overQuota = use && quota ? quotaRefusal(item.apiKey, item.row.num_images, use, quota) : undefined;
      if (overQuota) refused.set(item.row.id, { ok: false, error: overQuota });
      else if (inFlight >= cap) refused.set(item.row.id, { ok: false, error: tooManyInFlight(cap) });
      else if (queued >= deps.config.MAX_QUEUED) refused.set(item.row.id, { ok: false, error: queueFull() });
      else {
        counts.inFlight.set(item.apiKey.id, inFlight + 1);
        if (use) use.images += item.row.num_images;
        queued++;
      }
    }
    // A refused create leaves its key unused, as a refused request on its own would.
    await releaseIdempotencyKeys(
      trx,
      pending.flatMap((item) =>
        item.idempotency && refused.has(item.row.id)
          ? [{ apiKeyId: item.apiKey.id, key: item.idempotency.key, generationId: item.row.id }]
          : [],
      ),
    );

    const admitted = pending.filter((item) => !refused.has(item.row.id));
    // Rows and jobs in their model queues' fair order, in arrival order (db/fair-queue.ts).
    const { rows, rebase, positions } = await enqueueFairly(
      trx,
      deps.boss,
      admitted.map((item) => ({ row: item.row, apiKeyId: item.apiKey.id, weight: item.apiKey.weight })),
    );
    rebaseAfterCommit.push(...rebase);
    const byId = new Map(rows.map((row) => [row.id, row]));
    return items.map((item, i) => {
      const early = results[i];
      // A replay of a create refused in this very batch shares its refusal.
      if (early && 'replayOf' in early) return refused.get(early.replayOf.generation_id) ?? early;
      const refusal = refused.get(item.row.id);
      if (refusal) return refusal;
      const created = byId.get(item.row.id);
      if (!created) throw new Error(`generation ${item.row.id} was not inserted`);
      return { ok: true, row: created, position: positions?.get(created.id) };
    });
  }

  const inTransaction = async (items: readonly IntakeRequest[]) => {
    // Queues whose virtual times grew past fair-queue's REBASE_AT: shifted back after the commit.
    const rebaseAfterCommit: string[] = [];
    const results = await deps.db
      .transaction()
      .execute((trx) => admitAndInsert(trx, items, rebaseAfterCommit));
    for (const queue of new Set(rebaseAfterCommit)) {
      await rebaseFairQueue(deps.db, queue).catch((error: unknown) =>
        deps.logger?.warn(
          { err: error, queue },
          'rebasing the fair queue failed; the next batch tries again',
        ),
      );
    }
    return results;
  };

  /**
   * After the commit, off the batch's slot: the workers are woken first, and the new generations'
   * positions (as a read will report them: the fair order, this batch included) are read meanwhile,
   * once for the whole batch. A failed read leaves the positions at 0 rather than failing creates
   * that are already committed.
   */
  function afterCommit(created: readonly Created[]): Promise<Map<string, number>> {
    const woken = Promise.all(
      [...new Set(created.map(({ row }) => row.model))].map((model) => waker.poke(model)),
    );
    const known = new Map(
      created.flatMap(({ row, position }) => (position === undefined ? [] : [[row.id, position] as const])),
    );
    const unknown = created.filter(({ row }) => !known.has(row.id)).map(({ row }) => row);
    if (unknown.length === 0) return woken.then(() => known);
    const positions = fairQueuePositions(
      deps.db,
      unknown.map((row) => generationQueue(row.model)),
      unknown.map((row) => row.id),
    ).catch((error: unknown) => {
      deps.logger?.warn({ err: error }, "reading the new generations' queue positions failed");
      return new Map<string, number>();
    });
    return Promise.all([positions, woken]).then(([read]) => new Map([...known, ...read]));
  }

  async function runBatch(items: readonly IntakeRequest[]): Promise<BatchResult[]> {
    let results: (IntakeResult | Created)[];
    try {
      results = await inTransaction(items);
    } catch (error) {
      // One bad row must not fail the creates it happened to share a transaction with: retry each
      // alone. Anything else (Postgres unreachable) fails them all, at once.
      if (items.length === 1 || !isDataError(error)) throw error;
      results = await Promise.all(
        items.map((item) =>
          inTransaction([item]).then(
            ([result]) => result as IntakeResult | Created,
            (alone: unknown): IntakeResult => ({ ok: false, error: alone }),
          ),
        ),
      );
    }
    const created = results.flatMap((result) => (result.ok && 'row' in result ? [result as Created] : []));
    const positions = created.length > 0 ? afterCommit(created) : Promise.resolve(new Map<string, number>());
    return results.map(
      (result) => (result.ok && 'row' in result ? { ...result, positions } : result) as BatchResult,
    );
  }

  const submit = createBatcher(runBatch, options);
  return async (request) => {
    const result = await submit(request);
    if (!(result.ok && 'row' in result)) return result;
    // Answered once workers have been told and the position is read.
    const position = (await result.positions).get(result.row.id) ?? 0;
    return { ok: true, row: result.row, position };
  };
}
