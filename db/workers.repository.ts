// The worker registry: each worker process upserts its row at boot, refreshes it on a heartbeat
// (with the generation on its accelerator), and marks it stopped on a clean exit. A crashed
// worker's row simply goes stale; readers judge liveness by last_heartbeat_at.
import { type Kysely, sql } from 'kysely';
import type { Database, Worker } from './types.ts';

type Executor = Kysely<Database>;

export interface WorkerRegistration {
  id: string;
  hostname: string;
  pid: number;
  provider: string;
  model: Record<string, unknown>;
  /** models.id of the model it holds. */
  modelId: string;
  translator: Record<string, unknown> | null;
}

export async function registerWorker(db: Executor, worker: WorkerRegistration): Promise<void> {
  const values = {
    hostname: worker.hostname,
    pid: worker.pid,
    provider: worker.provider,
    model: JSON.stringify(worker.model),
    model_id: worker.modelId,
    translator: worker.translator ? JSON.stringify(worker.translator) : null,
  };
  // A restarted worker with a fixed WORKER_ID takes over its row with fresh counters.
  await db
    .insertInto('workers')
    .values({ id: worker.id, ...values })
    .onConflict((oc) =>
      oc.column('id').doUpdateSet({
        ...values,
        current_generation_id: null,
        jobs_succeeded: 0,
        jobs_failed: 0,
        started_at: sql`now()`,
        last_heartbeat_at: sql`now()`,
        stopped_at: null,
      }),
    )
    .execute();
}

export interface WorkerHeartbeat {
  currentGenerationId: string | null;
  jobsSucceeded: number;
  jobsFailed: number;
}

export async function heartbeatWorker(db: Executor, id: string, beat: WorkerHeartbeat): Promise<void> {
  await db
    .updateTable('workers')
    .set({
      current_generation_id: beat.currentGenerationId,
      jobs_succeeded: beat.jobsSucceeded,
      jobs_failed: beat.jobsFailed,
      last_heartbeat_at: sql`now()`,
    })
    .where('id', '=', id)
    .execute();
}

export async function markWorkerStopped(db: Executor, id: string): Promise<void> {
  await db
    .updateTable('workers')
    .set({ current_generation_id: null, stopped_at: sql`now()`, last_heartbeat_at: sql`now()` })
    .where('id', '=', id)
    .execute();
}

/**
 * Workers heard from within `staleAfterSeconds` (and not stopped) are live; older rows are listed
 * too when `includeStale`, so an operator sees a worker that died. Newest heartbeat first.
 */
export async function listWorkers(
  db: Executor,
  options: { staleAfterSeconds: number; includeStale: boolean; limit?: number },
): Promise<(Worker & { live: boolean })[]> {
  const live = sql<boolean>`(stopped_at is null and last_heartbeat_at > now() - make_interval(secs => ${options.staleAfterSeconds}))`;
  let query = db
    .selectFrom('workers')
    .selectAll()
    .select(live.as('live'))
    .orderBy('last_heartbeat_at', 'desc')
    .limit(options.limit ?? 500);
  if (!options.includeStale) query = query.where(live);
  return query.execute();
}
