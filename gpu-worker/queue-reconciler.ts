// Runs beside the queue loop in every worker: after pg-boss's supervisor has handed back (or
// failed) the jobs of a worker that died, this makes the rest of the system agree with it.
//   - A crashed attempt's retry is made runnable at once and the workers are woken, so the job
//     is back on a healthy worker within heartbeat + a few seconds, not after the backoff meant
//     for transient errors.
//   - A generation whose job pg-boss ended (every attempt killed its worker, or the last one
//     timed out) is marked failed with its own code and its webhook event.
// Every worker runs it; each step is idempotent, so running it N times changes nothing.
import { sql } from 'kysely';
import type { PgBoss } from 'pg-boss';
import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import { generationQueue, type QueueWaker } from '../db/queue.ts';
import { expediteCrashRetries, reconcileQueueDrift } from '../db/queue-reconcile.ts';

export interface QueueReconcilerOptions {
  db: Db;
  boss: PgBoss;
  logger: Logger;
  /** Wakes this model's workers (this one included) when crashed jobs became runnable. */
  waker: QueueWaker;
  /** The model this worker holds: its queue's crashed retries are the ones it expedites. */
  model: string;
  /** How often to look (the same cadence as pg-boss's supervisor, QUEUE_MONITOR_SECONDS). */
  intervalMs: number;
  /** How often to compare every unfinished row with its job (finds any other drift). */
  fullSweepIntervalMs?: number;
}

export interface QueueReconciler {
  /** One pass now; the first call (at start, once the queue exists) also starts the timer. */
  runNow(): Promise<void>;
  stop(): Promise<void>;
}

export function startQueueReconciler(options: QueueReconcilerOptions): QueueReconciler {
  const { db, boss, logger, waker } = options;
  const fullEveryMs = options.fullSweepIntervalMs ?? 10 * 60_000;
  /** Database time of the previous pass; jobs failed since (less a margin) are checked. */
  let since: Date | undefined;
  let lastFullSweep = 0;
  let running: Promise<void> | undefined;
  let stopped = false;

  async function pass(): Promise<void> {
    const { rows } = await sql<{ now: Date }>`select now() as now`.execute(db);
    const now = rows[0]?.now ?? new Date();
    const expedited = await expediteCrashRetries(db, generationQueue(options.model));
    if (expedited > 0) {
      logger.info({ jobs: expedited }, 'crashed attempts made runnable again');
      await waker.poke(options.model);
    }
    const full = since === undefined || Date.now() - lastFullSweep >= fullEveryMs;
    // One second of margin: a job failed in the same instant as the last pass's clock reading.
    const ended = await reconcileQueueDrift(
      db,
      boss,
      full ? {} : { since: new Date((since?.getTime() ?? 0) - 1_000) },
    );
    if (full) lastFullSweep = Date.now();
    since = now;
    for (const { id, code } of ended) {
      logger.warn(
        { generation_id: id, code },
        'generation failed: its job ended without a worker recording it',
      );
    }
  }

  let timer: NodeJS.Timeout | undefined;
  const runNow = (): Promise<void> => {
    if (!timer && !stopped) {
      timer = setInterval(() => void runNow(), options.intervalMs);
      timer.unref();
    }
    running ??= pass()
      .catch((error: unknown) =>
        logger.warn({ err: error }, 'queue reconciliation failed; retrying next pass'),
      )
      .finally(() => {
        running = undefined;
      });
    return running;
  };

  return {
    runNow,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
