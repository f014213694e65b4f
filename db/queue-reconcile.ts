// Keeps the generations table and the queue from disagreeing. A row is the client's view; its
// pg-boss job is what the workers act on. They normally change together (the worker records the
// row, then settles the job), but pg-boss can end a job on its own: when the worker holding it
// stops heartbeating (SIGKILL, out of memory, a lost box) or it outlives its timeout on its last
// attempt, the supervisor marks it failed and no process of ours is there to record it. Without
// this the row would say `running` forever and no `generation.failed` webhook would go out.
import { sql } from 'kysely';
import type { PgBoss } from 'pg-boss';
import type { Db } from './connect.ts';
import { markFailed } from './generations.repository.ts';
import { generationQueueSql, PGBOSS_SCHEMA } from './queue.ts';
import { withWebhookEvent } from './webhooks.repository.ts';

/** A row still queued or running whose job is final or gone. */
export interface QueueDrift {
  id: string;
  status: string;
  /** The job's state, or null when the job no longer exists. */
  job_state: string | null;
  /** pg-boss's own failure message ('job heartbeat timeout', 'job timed out') or ours. */
  job_message: string | null;
  /** The code a worker recorded when it failed the job itself. */
  job_code: string | null;
}

// pg-boss's supervisor writes these outputs (plans.js failJobsByHeartbeat / failJobsByTimeout).
const HEARTBEAT_LOST = 'job heartbeat timeout';
const TIMED_OUT = 'job timed out';

/**
 * Rows still queued or running whose job is final or gone. With `since`, only jobs that failed
 * after it (pg-boss's index on completed_on keeps this cheap while jobs complete by the thousand);
 * without, every unfinished row is checked against its job (at start and now and then), which
 * also finds jobs deleted or settled behind our back.
 */
export async function findQueueDrift(
  db: Db,
  options: { since?: Date; limit?: number } = {},
): Promise<QueueDrift[]> {
  const limit = options.limit ?? 100;
  const job = sql.table(`${PGBOSS_SCHEMA}.job`);
  const columns = sql`g.id, g.status, j.state::text as job_state,
      coalesce(j.output->'value'->>'message', j.output->>'message') as job_message,
      j.output->>'code' as job_code`;
  const query = options.since
    ? sql<QueueDrift>`
      select ${columns}
      from ${job} j join generations g on g.id = j.id and j.name = ${generationQueueSql('g')}
      where j.completed_on >= ${options.since} and j.state = 'failed'
        and g.status in ('queued', 'running')
      limit ${limit}`
    : sql<QueueDrift>`
      select ${columns}
      from generations g
      left join ${job} j on j.name = ${generationQueueSql('g')} and j.id = g.id
      where g.status in ('queued', 'running')
        and (j.id is null or j.state in ('completed', 'failed', 'cancelled'))
      limit ${limit}`;
  return (await query.execute(db)).rows;
}

/** What the client is told about a generation whose job ended without a worker recording it. */
export function failureForDrift(drift: QueueDrift): { code: string; message: string } {
  if (drift.job_state === 'failed' && drift.job_message === HEARTBEAT_LOST) {
    return {
      code: 'worker_lost',
      message:
        'Every attempt ended with its worker gone (crashed, killed or out of memory) before it finished; ' +
        'the request may be more than the workers can hold.',
    };
  }
  if (drift.job_state === 'failed' && drift.job_message === TIMED_OUT) {
    return { code: 'timeout', message: 'The last attempt exceeded the job timeout.' };
  }
  if (drift.job_state === 'failed') {
    return { code: drift.job_code ?? 'internal_error', message: drift.job_message ?? 'The job failed.' };
  }
  return {
    code: 'job_lost',
    message: `The generation's queue job is ${drift.job_state ?? 'missing'} but its result was never recorded.`,
  };
}

/**
 * Ends every drifted row as failed (with its webhook event, in one transaction per row). Safe to
 * run from every worker at once: markFailed only moves rows still queued or running, so each row
 * ends once. Returns the rows it ended.
 */
export async function reconcileQueueDrift(
  db: Db,
  boss: PgBoss | undefined,
  options: { since?: Date } = {},
): Promise<{ id: string; code: string }[]> {
  const ended: { id: string; code: string }[] = [];
  for (const drift of await findQueueDrift(db, options)) {
    const failure = failureForDrift(drift);
    const row = await withWebhookEvent(db, boss, (trx) => markFailed(trx, drift.id, failure));
    if (row) ended.push({ id: drift.id, code: failure.code });
  }
  return ended;
}

/**
 * A crashed attempt waits out pg-boss's retry backoff (meant for transient errors, 4–8 s for a
 * first retry at the defaults) although the next worker is healthy. Makes such retries in `queue`
 * (a model's) runnable now; returns how many, so the caller can wake that model's workers.
 */
export async function expediteCrashRetries(db: Db, queue: string): Promise<number> {
  const result = await sql`
    update ${sql.table(`${PGBOSS_SCHEMA}.job`)} set start_after = now()
    where name = ${queue} and state = 'retry' and start_after > now()
      and output->'value'->>'message' = ${HEARTBEAT_LOST}`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
