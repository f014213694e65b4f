// The contract between the API (producer) and the GPU worker (consumer): queue names, the
// versioned job payload, and how both sides construct pg-boss.
import { type Kysely, sql } from 'kysely';
import { fromKysely, PgBoss } from 'pg-boss';
import { z } from 'zod';
import type { Database } from './types.ts';

/** Model ids: lowercase letters, digits, '.', '_' and '-', so they fit in a queue name and a URL. */
export const MODEL_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/**
 * The queue generations were in before models existed; its jobs run on the default model. New
 * generations go to their model's queue (generationQueue).
 */
export const LEGACY_GENERATION_QUEUE = 'generations';

/**
 * Each model has its own queue, so a job is only ever fetched by a worker holding its model warm,
 * and pickup, retries, crash recovery and positions work per model exactly as with one queue.
 */
export function generationQueue(model: string | null): string {
  return model === null ? LEGACY_GENERATION_QUEUE : `${LEGACY_GENERATION_QUEUE}/${model}`;
}

/** SQL for the queue of a generations row aliased `alias` (the reconciler joins rows to jobs). */
export function generationQueueSql(alias: string) {
  const model = sql.ref(`${alias}.model`);
  return sql<string>`case when ${model} is null then ${LEGACY_GENERATION_QUEUE} else ${`${LEGACY_GENERATION_QUEUE}/`} || ${model} end`;
}

/**
 * Workers LISTEN here to fetch within milliseconds of an insert; the payload is the model whose
 * queue got jobs ('' wakes every worker). The API sends it after a create batch commits
 * (QueueWaker); enqueueGeneration sends it in its transaction (delivered on commit). Our own
 * channel, so the wake-up does not depend on pg-boss internals. Retries whose backoff ends send
 * nothing: workers also poll every few seconds.
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
 * Creates a model's generation queue if missing. With a policy (the worker's, from its config)
 * the policy is (re)applied; without one (producers) an existing queue is left as it is, so an
 * API restart never resets what the workers configured. pg-boss copies the policy onto each job
 * when it is sent.
 */
export async function ensureGenerationQueue(boss: PgBoss, model: string | null, policy?: QueuePolicy) {
  const name = generationQueue(model);
  // notify off: workers wake on GENERATION_QUEUED_CHANNEL, so pg-boss's own NOTIFY would be a
  // second, unused one per insert.
  const options = { ...toQueueOptions(policy ?? DEFAULT_QUEUE_POLICY), notify: false };
  if (!(await boss.getQueue(name))) {
    try {
      await boss.createQueue(name, options);
      return;
    } catch (error) {
      // Another process created it between our check and our insert.
      if (!(await boss.getQueue(name))) throw error;
    }
  }
  if (policy) await boss.updateQueue(name, options);
}

/**
 * One generation's job inside the caller's transaction, with its wake-up (for scripts and tests
 * that write rows themselves; the API batches through enqueueGenerations). The job id is the
 * generation id: retries keep it, and an operator can join the two. Without a priority the job is
 * outside the fair order (db/fair-queue.ts): priority 0 runs before every job a create queued.
 */
export async function enqueueGeneration(
  boss: PgBoss,
  trx: Kysely<Database>,
  generation: QueuedGeneration,
): Promise<void> {
  await enqueueGenerations(boss, trx, [generation]);
  await sql`select pg_notify(${GENERATION_QUEUED_CHANNEL}, ${generation.model ?? ''})`.execute(trx);
}

/** What the queue needs of a generation: its id (the job's) and its model (the queue). */
export interface QueuedGeneration {
  id: string;
  model: string | null;
  /** Its place in the fair order (db/fair-queue.ts): pg-boss fetches higher first; default 0. */
  priority?: number;
}

/**
 * Several generations' jobs in one statement inside the caller's transaction (the batched create
 * path). Sends no wake-up: a NOTIFY in the transaction would take Postgres's global notify lock
 * at every commit; the caller pokes a QueueWaker after committing instead.
 */
export async function enqueueGenerations(
  boss: PgBoss,
  trx: Kysely<Database>,
  generations: readonly QueuedGeneration[],
): Promise<void> {
  const byQueue = Map.groupBy(generations, (generation) => generationQueue(generation.model));
  for (const [queue, group] of byQueue) {
    const jobs = group.map(({ id, priority }) => ({
      id,
      data: { v: 1, generation_id: id } satisfies GenerationJob,
      ...(priority === undefined ? {} : { priority }),
    }));
    const inserted = await boss.insert(queue, jobs, { db: fromKysely(trx), returnId: true });
    // pg-boss skips conflicting ids silently; a row without its job must roll back, not commit.
    if (inserted?.length !== jobs.length) {
      throw new Error(
        `pg-boss inserted ${inserted?.length ?? 0} of ${jobs.length} generation jobs into ${queue}`,
      );
    }
  }
}

export interface QueueWaker {
  /**
   * Wakes the idle workers of a model (null: every worker); resolves once a NOTIFY sent after
   * this call has completed (never rejects). Pokes for one model that arrive while one is in
   * flight share the next one.
   */
  poke(model: string | null): Promise<void>;
}

/**
 * Wake-ups for committed jobs, sent outside any create transaction and coalesced per model, so a
 * burst of creates costs a handful of NOTIFYs instead of one per create. A wake-up that fails is
 * only a delay: workers also poll every few seconds.
 */
export function createQueueWaker(db: Kysely<Database>, onError: (error: unknown) => void): QueueWaker {
  const inFlight = new Map<string, Promise<void>>();
  const next = new Map<string, Promise<void>>();
  const send = (payload: string): Promise<void> =>
    sql`select pg_notify(${GENERATION_QUEUED_CHANNEL}, ${payload})`
      .execute(db)
      .then(() => undefined, onError);
  const poke = (model: string | null): Promise<void> => {
    const payload = model ?? '';
    const current = inFlight.get(payload);
    if (!current) {
      const sent = send(payload).finally(() => inFlight.delete(payload));
      inFlight.set(payload, sent);
      return sent;
    }
    // One is in flight but may have been sent before this poke's rows committed: follow it.
    let following = next.get(payload);
    if (!following) {
      following = current.then(() => {
        next.delete(payload);
        return poke(model);
      });
      next.set(payload, following);
    }
    return following;
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
  generation: QueuedGeneration,
): Promise<void> {
  await boss.cancel(generationQueue(generation.model), generation.id, { db: fromKysely(trx) });
}

/** How many generation jobs pg-boss still holds as runnable or running (for diagnostics and tests). */
export async function countOpenGenerationJobs<DB>(db: Kysely<DB>): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    select count(*)::int as n from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
    where (name = ${LEGACY_GENERATION_QUEUE} or name like ${`${LEGACY_GENERATION_QUEUE}/%`})
      and state in ('created', 'retry', 'active')`.execute(db);
  return rows[0]?.n ?? 0;
}
