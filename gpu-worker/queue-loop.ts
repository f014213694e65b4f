// Keeps the accelerator busy: exactly one generation denoises at a time, while around it
//   - the next job is fetched and prepared (row read, prompt translated) before the current one
//     finishes denoising, and
//   - finished jobs' CPU tails (JPEG, upload, database, webhook enqueue) run concurrently with the
//     next denoise.
// Every job in hand stays an active pg-boss job, heartbeated, until its own tail settles it; a
// crash at any point hands all of them back (after the heartbeat lapses), and because output keys
// and status transitions are idempotent, a re-run yields one set of outputs and one success.
//
// Prefetching is timed, not eager: a job is taken only about PREFETCH_LEAD_MS before the current
// one is expected to finish, so with several workers an idle GPU still gets new work first.
import type { JobWithMetadata, PgBoss } from 'pg-boss';
import type { Logger } from 'pino';
import {
  type DenoisedJob,
  type GenerationStages,
  type HeldJob,
  isSettlement,
  type PreparedJob,
  type Settlement,
} from './generation.handler.ts';

export interface QueueLoopOptions {
  boss: PgBoss;
  /** The queue of the model this worker holds warm (generationQueue): the only one it fetches from. */
  queue: string;
  stages: GenerationStages;
  logger: Logger;
  /** Queue policy's heartbeat: held jobs are touched at half this interval. */
  heartbeatSeconds: number;
  /** Start taking the next job this long before the current denoise is expected to end. */
  prefetchLeadMs: number;
  /** CPU tails allowed in flight before the next denoise waits (bounds memory when S3 is slow). */
  maxTails?: number;
  /** Backstop poll when no wake-up arrives (retries whose backoff ended send no NOTIFY). */
  pollIntervalMs?: number;
  /** Observes accelerator use and outcomes (metrics, benchmarks). */
  observer?: QueueLoopObserver;
}

export interface QueueLoopObserver {
  acceleratorBusy?(generationId: string, startMs: number, endMs: number): void;
  settled?(settlement: Settlement, generationId: string | undefined): void;
}

export interface QueueLoop {
  /** Jobs fetched and not yet settled (prefetched, denoising, or in their tail). */
  readonly held: number;
  /** A new job may be waiting: fetch now instead of at the next poll. */
  wake(): void;
  /** Stops taking jobs; resolves once every job in hand has settled. */
  stop(): Promise<void>;
  /** Resolves when the loop has ended (after stop, or if it crashed). */
  readonly done: Promise<void>;
}

const SETTLE_ATTEMPTS = 6;

export function startQueueLoop(options: QueueLoopOptions): QueueLoop {
  const { boss, queue, stages, logger, observer } = options;
  const maxTails = options.maxTails ?? 2;
  const pollIntervalMs = options.pollIntervalMs ?? 2_000;
  const held = new Map<string, { job: JobWithMetadata<unknown>; timer: NodeJS.Timeout }>();
  const tails = new Set<Promise<void>>();
  let stopping = false;
  let wakeUp: (() => void) | undefined;
  let pendingWake = false;
  /** Moving estimate of a denoise's duration, to time the prefetch. */
  let expectedDenoiseMs: number | undefined;

  const heartbeat = setInterval(
    () => {
      if (held.size === 0) return;
      const attempts = [...held.values()].map(({ job }) => ({ id: job.id, retryCount: job.retryCount }));
      boss.touch(queue, attempts).catch((error: unknown) => {
        // The next beat tries again; only a long outage lets pg-boss hand the jobs back.
        logger.warn({ err: error, jobs: attempts.length }, 'job heartbeat failed');
      });
    },
    Math.max(1_000, (options.heartbeatSeconds * 1000) / 2),
  );

  function wake() {
    pendingWake = true;
    wakeUp?.();
  }

  function sleep(ms: number): Promise<void> {
    if (pendingWake || stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeUp = undefined;
        resolve();
      }
      wakeUp = done;
    });
  }

  async function fetchOne(): Promise<JobWithMetadata<unknown> | undefined> {
    let backoffMs = 250;
    while (!stopping) {
      pendingWake = false;
      try {
        const [job] = await boss.fetch<unknown>(queue, { batchSize: 1, includeMetadata: true });
        if (job) return job;
        await sleep(pollIntervalMs);
        backoffMs = 250;
      } catch (error) {
        // Postgres unreachable: keep trying, more slowly, until it returns.
        logger.warn({ err: error, retry_in_ms: backoffMs }, 'fetching the next job failed');
        await sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 5_000);
      }
    }
    return undefined;
  }

  function hold(job: JobWithMetadata<unknown>): HeldJob {
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(new Error('job timeout')), job.expireInSeconds * 1000);
    held.set(job.id, { job, timer });
    return {
      id: job.id,
      data: job.data,
      retryCount: job.retryCount,
      retryLimit: job.retryLimit,
      expireInSeconds: job.expireInSeconds,
      signal: timeout.signal,
    };
  }

  async function settle(job: HeldJob, settlement: Settlement, generationId?: string): Promise<void> {
    const attempt = { id: job.id, retryCount: job.retryCount };
    // Kept in `held` (heartbeated) until pg-boss has the outcome, so a brief outage does not
    // make it look abandoned.
    for (let i = 0; i < SETTLE_ATTEMPTS; i++) {
      try {
        if (settlement.error) await boss.fail(queue, attempt, { ...settlement.error });
        else await boss.complete(queue, attempt);
        break;
      } catch (error) {
        if (i === SETTLE_ATTEMPTS - 1) {
          // The heartbeat stops below, so pg-boss hands it back; the re-run finds the row's final
          // status and skips it.
          logger.error({ err: error, job_id: job.id }, 'could not settle the job; it will be handed back');
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** i));
      }
    }
    const entry = held.get(job.id);
    if (entry) clearTimeout(entry.timer);
    held.delete(job.id);
    observer?.settled?.(settlement, generationId);
  }

  /** Fetches and prepares jobs until one is ready for the accelerator (undefined once stopping). */
  async function acquire(): Promise<PreparedJob | undefined> {
    while (!stopping) {
      const fetched = await fetchOne();
      if (!fetched) return undefined;
      const job = hold(fetched);
      const prepared = await stages.prepare(job).catch(unexpected);
      if (!isSettlement(prepared)) return prepared;
      await settle(job, prepared);
    }
    return undefined;
  }

  /** Stages settle their own failures; anything escaping them is a bug, retried rather than stranded. */
  function unexpected(error: unknown): Settlement {
    logger.error({ err: error }, 'a job stage threw; the attempt will be retried');
    return { outcome: 'retry', error: { code: 'internal_error', message: String(error), permanent: false } };
  }

  function startTail(work: Promise<void>) {
    const tail = work.catch((error: unknown) => logger.error({ err: error }, 'job tail crashed'));
    tails.add(tail);
    void tail.finally(() => tails.delete(tail));
  }

  async function run() {
    let next: Promise<PreparedJob | undefined> | undefined = acquire();
    for (;;) {
      const prepared = await next;
      next = undefined;
      if (!prepared) break;
      // Back-pressure: with the object store slow or down, finished images must not pile up.
      while (tails.size >= maxTails) await Promise.race(tails);

      const prefetch = () => {
        if (!stopping) next ??= acquire();
      };
      const lead = expectedDenoiseMs === undefined ? 0 : expectedDenoiseMs - options.prefetchLeadMs;
      const prefetchTimer = lead > 0 ? setTimeout(prefetch, lead) : undefined;
      if (lead <= 0) prefetch();

      const job = prepared.ctx.job;
      const denoised: DenoisedJob | Settlement = await stages.denoise(prepared).catch(unexpected);
      clearTimeout(prefetchTimer);
      if (isSettlement(denoised)) {
        startTail(settle(job, denoised, prepared.ctx.id));
      } else {
        const ms = denoised.acceleratorEnd - denoised.acceleratorStart;
        expectedDenoiseMs = expectedDenoiseMs === undefined ? ms : 0.7 * expectedDenoiseMs + 0.3 * ms;
        observer?.acceleratorBusy?.(prepared.ctx.id, denoised.acceleratorStart, denoised.acceleratorEnd);
        startTail(
          stages
            .finish(denoised)
            .catch(unexpected)
            .then((settled) => settle(job, settled, prepared.ctx.id)),
        );
      }
      prefetch();
    }
    await Promise.all(tails);
  }

  const done = run()
    .catch((error: unknown) => logger.fatal({ err: error }, 'queue loop crashed'))
    .finally(() => clearInterval(heartbeat));

  return {
    get held() {
      return held.size;
    },
    wake,
    async stop() {
      stopping = true;
      wakeUp?.();
      await done;
    },
    done,
  };
}
