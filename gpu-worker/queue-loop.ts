// Pulls generation jobs one at a time. pg-boss wakes us by LISTEN/NOTIFY when a job is inserted;
// after every job we ask it to fetch again at once, because with notify on its fallback poll is
// 30 s and a backlog would otherwise drain at one job per poll (see notes/runtime.md).
import type { PgBoss } from 'pg-boss';
import { GENERATION_QUEUE } from '../db/queue.ts';
import type { createGenerationHandler } from './generation.handler.ts';

export interface QueueLoop {
  workerId: string;
  /** Stops fetching and resolves once the job in hand (if any) has settled. */
  stop(): Promise<void>;
}

export async function startQueueLoop(
  boss: PgBoss,
  handle: ReturnType<typeof createGenerationHandler>,
): Promise<QueueLoop> {
  let workerId = '';
  workerId = await boss.work(
    GENERATION_QUEUE,
    {
      batchSize: 1,
      localConcurrency: 1,
      includeMetadata: true,
      pollingIntervalSeconds: 2,
      // NOTIFY fires when a job is inserted, not when a retry's backoff delay ends: without a
      // short backstop poll a retried job would wait up to pg-boss's default 30 s extra.
      notifyPollingIntervalSeconds: 2,
    },
    async ([job]) => {
      try {
        if (job) await handle(job);
      } finally {
        if (workerId) boss.notifyWorker(workerId);
      }
    },
  );
  return {
    workerId,
    stop: () => boss.offWork(GENERATION_QUEUE, { wait: true }),
  };
}
