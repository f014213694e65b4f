// The contract between the API (producer) and the GPU worker (consumer): queue names, the
// versioned job payload, and how both sides construct pg-boss.
import { type Kysely, sql } from 'kysely';
import { fromKysely, PgBoss } from 'pg-boss';
import { z } from 'zod';
import type { Database } from './types.ts';

export const GENERATION_QUEUE = 'generations';
/**
 * Workers LISTEN here to fetch within milliseconds of an insert. The API sends it after a create
 * batch commits (QueueWaker); enqueueGeneration sends it in its transaction (delivered on commit).
 * Our own channel, so the wake-up does not depend on pg-boss internals. Retries whose backoff
 * ends send nothing: workers also poll every few seconds.
 */
export const GENERATION_QUEUED_CHANNEL = 'easel_generation_queued';
export const PGBOSS_SCHEMA = 'pgboss';

/**
 * v1 carries only the id: the generations row is the single source of truth for parameters,
 * so a retried or re-queued job always runs what the row says (and sees a cancel).
 */
export const generationJobV1 = z.object({ v: z.literal(1), generation_id: z.uuid() });
export const generationJob = z.discriminatedUnion('v', [generationJobV1]);
export type GenerationJob = z.infer<typeof generationJob>;

export interface QueuePolicy {
  /** Job timeout: past it the worker's AbortSignal fires and pg-boss retries or fails the job. */
  expireInSeconds: number;
  retryLimit: number;
  retryDelaySeconds: number;
  retryDelayMaxSeconds: number;
  /** A worker that stops heartbeating (crash, power loss) gives its job back after about this long. */
  heartbeatSeconds: number;
}

/**
 * The one source of the policy's defaults: a producer creates the queue with it, and the worker's
 * JOB_TIMEOUT_SECONDS, JOB_RETRY_* and HEARTBEAT_SECONDS default to it (gpu-worker/config.ts).
 */
export const DEFAULT_QUEUE_POLICY: QueuePolicy = {
  expireInSeconds: 600,
  retryLimit: 3,
  retryDelaySeconds: 2,
  retryDelayMaxSeconds: 60,
  heartbeatSeconds: 10,
};

export interface BossOptions {
  applicationName?: string;
  /** Producers (the API) need no maintenance loop; one worker-side instance is enough. */
  supervise?: boolean;
  max?: number;
  /** How often expired and dead-heartbeat jobs are found (pg-boss default 60 s). */
  monitorIntervalSeconds?: number;
}

export function createBoss(connectionString: string, options: BossOptions = {}): PgBoss {
  return new PgBoss({
    connectionString,
    schema: PGBOSS_SCHEMA,
    application_name: options.applicationName ?? 'easel',
    max: options.max ?? 4,
    // Wake workers within milliseconds of an insert instead of on the next poll.
    useListenNotify: true,
    supervise: options.supervise ?? true,
    schedule: false,
    connectionTimeoutMillis: 5_000,
    ...(options.monitorIntervalSeconds
      ? {
          monitorIntervalSeconds: options.monitorIntervalSeconds,
          superviseIntervalSeconds: options.monitorIntervalSeconds,
        }
      : {}),
  });
}

function toQueueOptions(policy: QueuePolicy) {
  return {
    expireInSeconds: policy.expireInSeconds,
    retryLimit: policy.retryLimit,
    retryDelay: policy.retryDelaySeconds,
    retryBackoff: true,
    retryDelayMax: policy.retryDelayMaxSeconds,
    heartbeatSeconds: policy.heartbeatSeconds,
    // Keep finished jobs a day for debugging; the generations row is the long-term record.
    deleteAfterSeconds: 86_400,
  };
}

/**
 * Creates the generation queue if missing. With a policy (the worker's, from its config) the
 * policy is (re)applied; without one (producers) an existing queue is left as it is, so an API
 * restart never resets what the workers configured. pg-boss copies the policy onto each job
 * when it is sent.
 */
export async function ensureGenerationQueue(boss: PgBoss, policy?: QueuePolicy) {
  // notify off: workers wake on GENERATION_QUEUED_CHANNEL, so pg-boss's own NOTIFY would be a
  // second, unused one per insert.
  const options = { ...toQueueOptions(policy ?? DEFAULT_QUEUE_POLICY), notify: false };
  if (!(await boss.getQueue(GENERATION_QUEUE))) {
    try {
      await boss.createQueue(GENERATION_QUEUE, options);
      return;
    } catch (error) {
      // Another process created it between our check and our insert.
      if (!(await boss.getQueue(GENERATION_QUEUE))) throw error;
    }
  }
  if (policy) await boss.updateQueue(GENERATION_QUEUE, options);
}

/**
 * One generation's job inside the caller's transaction, with its wake-up (for scripts and tests
 * that write rows themselves; the API batches through enqueueGenerations). The job id is the
 * generation id: retries keep it, and an operator can join the two.
 */
export async function enqueueGeneration(
  boss: PgBoss,
  trx: Kysely<Database>,
  generationId: string,
): Promise<void> {
  await enqueueGenerations(boss, trx, [generationId]);
  await sql`select pg_notify(${GENERATION_QUEUED_CHANNEL}, ${generationId})`.execute(trx);
}

/**
 * Several generations' jobs in one statement inside the caller's transaction (the batched create
 * path). Sends no wake-up: a NOTIFY in the transaction would take Postgres's global notify lock
 * at every commit; the caller pokes a QueueWaker after committing instead.
 */
export async function enqueueGenerations(
  boss: PgBoss,
  trx: Kysely<Database>,
  generationIds: readonly string[],
): Promise<void> {
  if (generationIds.length === 0) return;
  const jobs = generationIds.map((id) => ({ id, data: { v: 1, generation_id: id } satisfies GenerationJob }));
  const inserted = await boss.insert(GENERATION_QUEUE, jobs, { db: fromKysely(trx), returnId: true });
  // pg-boss skips conflicting ids silently; a row without its job must roll back, not commit.
  if (inserted?.length !== generationIds.length) {
    throw new Error(`pg-boss inserted ${inserted?.length ?? 0} of ${generationIds.length} generation jobs`);
  }
}

export interface QueueWaker {
  /**
   * Wakes idle workers; resolves once a NOTIFY sent after this call has completed (never
   * rejects). Pokes that arrive while one is in flight share the next one.
   */
  poke(): Promise<void>;
}

/**
 * Wake-ups for committed jobs, sent outside any create transaction and coalesced, so a burst
 * of creates costs a handful of NOTIFYs instead of one per create. A wake-up that fails is only
 * a delay: workers also poll every few seconds.
 */
export function createQueueWaker(db: Kysely<Database>, onError: (error: unknown) => void): QueueWaker {
  let inFlight: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  const send = (): Promise<void> =>
    sql`select pg_notify(${GENERATION_QUEUED_CHANNEL}, '')`.execute(db).then(() => undefined, onError);
  const poke = (): Promise<void> => {
    if (!inFlight) {
      inFlight = send().finally(() => {
        inFlight = undefined;
      });
      return inFlight;
    }
    // One is in flight but may have been sent before this poke's rows committed: follow it.
    next ??= inFlight.then(() => {
      next = undefined;
      return poke();
    });
    return next;
  };
  return { poke };
}

/**
 * Cancels a generation's job inside the caller's transaction (with the row's own cancel), so it
 * is never fetched. A job a worker already fetched is unaffected; its claim finds the row canceled.
 */
export async function cancelGenerationJob(
  boss: PgBoss,
  trx: Parameters<typeof fromKysely>[0],
  generationId: string,
): Promise<void> {
  await boss.cancel(GENERATION_QUEUE, generationId, { db: fromKysely(trx) });
}

/** How many generation jobs pg-boss still holds as runnable or running (for diagnostics and tests). */
export async function countOpenGenerationJobs<DB>(db: Kysely<DB>): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
    where name = ${GENERATION_QUEUE} and state in ('created', 'retry', 'active')`.execute(db);
  return rows[0]?.n ?? 0;
}
