// Fair turns between API keys on each model's queue, inside Postgres and pg-boss: start-time fair
// queueing (SFQ, Goyal et al. 1996) computed when a job is inserted and stored as its pg-boss
// priority. pg-boss fetches `priority desc, created_on` (index job_i11), so with priority = −start
// the fetch order is the fair order; workers, retries, crash recovery and prefetch are pg-boss's
// as before, and there is no scheduler process.
//
// Each job gets a virtual start time S = max(V, F_key) and the key's finish time becomes
// F_key = S + TURN / weight, where V is the queue's virtual time: the start of its head (the lowest
// start still waiting), or, with nothing waiting, the latest finish handed out. So:
//   - a key with a backlog has its jobs spaced TURN / weight apart, and other keys' jobs interleave
//     between them in proportion to their weights;
//   - a key arriving at a busy queue starts at V, level with the head: its job is fetched right
//     after the head (which was there first), whatever backlog other keys have;
//   - within a key starts strictly increase, so its own jobs keep first come, first served
//     (ties between keys fall back to created_on, then index order);
//   - a retried or handed-back job keeps its priority, so it runs before everything queued after it.
// F_key is remembered per (queue, key) in `fair_share` so a key that trickles one job at a time
// still gets only its weight's share; it is clamped to one turn past V when the key has nothing
// waiting (a key that canceled its backlog is not pushed behind the jobs it no longer has).
import { type Kysely, sql } from 'kysely';
import type { PgBoss } from 'pg-boss';
import { enqueueGenerations, generationQueue, generationQueueSql, PGBOSS_SCHEMA } from './queue.ts';
import type { Database, Generation, NewGeneration } from './types.ts';

type Executor = Kysely<Database>;

/** Virtual time one job of a weight-1 key takes: divisible by 1..10, so common weights are exact. */
export const TURN = 5_040;

/** pg-boss's priority is a 32-bit integer: past this the queue's times are shifted back (rebaseFairQueue). */
export const REBASE_AT = 2 ** 30;

export function turnFor(weight: number): number {
  return Math.max(1, Math.round(TURN / weight));
}

/** Advisory-lock namespaces (the first key of the two-int form), so ours never collide with others'. */
const TENANT_LOCK = 0x45534c31; // 'ESL1'
const QUEUE_LOCK = 0x45534c32; // 'ESL2'

const jobTable = sql.table(`${PGBOSS_SCHEMA}.job`);

/**
 * Serialises creates per API key across API processes, so a key's quota checks and its turn order
 * see each other's rows; and takes each queue's shared lock, which a rebase takes exclusively.
 * Call first in the create transaction. Locks are taken in sorted order, so two batches never
 * deadlock; both are released at commit.
 */
export async function lockForCreate(
  trx: Executor,
  apiKeyIds: readonly string[],
  models: readonly (string | null)[],
): Promise<void> {
  const keys = [...new Set(apiKeyIds)].sort();
  const queues = [...new Set(models.map(generationQueue))].sort();
  await sql`
    select
      (select count(pg_advisory_xact_lock_shared(${QUEUE_LOCK}, hashtext(q)))
        from (select q from unnest(${queues}::text[]) q order by q) qs),
      (select count(pg_advisory_xact_lock(${TENANT_LOCK}, hashtext(k)))
        from (select k from unnest(${keys}::text[]) k order by k) ks)`.execute(trx);
}

export interface FairJob {
  id: string;
  model: string | null;
  apiKeyId: string;
  /** The key's weight (api_keys.weight). */
  weight: number;
}

export interface FairAssignment {
  /** Each job's pg-boss priority (−start), by job id. */
  priorities: Map<string, number>;
  /** Each (queue, key)'s new finish, for fair_share (written with the rows, enqueueFairly). */
  finishes: { queue: string; apiKeyId: string; finish: number }[];
  /** Queues whose times crossed REBASE_AT: rebase them once this transaction has committed. */
  rebase: string[];
  /**
   * Per queue with nothing waiting when the starts were read: its prefetched jobs. The new jobs'
   * positions there follow without a count (the prefetched ones, then the batch in fetch order).
   */
  idleQueues: Map<string, number>;
}

/**
 * Gives each job its start time, in arrival order, and each key its new finish time. Run in the
 * create transaction after lockForCreate, so the key's earlier jobs (committed by another process)
 * are seen, and before the rows are written: each row keeps its start (fair_start) and the
 * finishes are recorded with them (enqueueFairly). One statement per batch, whatever its size.
 */
export async function assignFairStarts(trx: Executor, jobs: readonly FairJob[]): Promise<FairAssignment> {
  if (jobs.length === 0) return { priorities: new Map(), finishes: [], rebase: [], idleQueues: new Map() };
  const pairs = [
    ...new Map(jobs.map((job) => [`${generationQueue(job.model)}\n${job.apiKeyId}`, job])).values(),
  ];
  const { rows } = await sql<{
    queue: string;
    api_key_id: string;
    head_priority: number | null;
    max_finish: number | null;
    last_finish: number | null;
    last_pending: number | null;
    prefetched: number;
  }>`
    select p.queue, p.api_key_id,
      (select count(*)::int from (${prefetchedSql(sql.ref('p.queue'))}) f) as prefetched,
      (select max(j.priority) from ${jobTable} j
         where j.name = p.queue and j.state < 'active' and not j.blocked) as head_priority,
      (select max(f.last_finish) from fair_share f where f.queue = p.queue) as max_finish,
      (select f.last_finish from fair_share f where f.queue = p.queue and f.api_key_id = p.api_key_id) as last_finish,
      -- The key's latest queued start in this queue, from its rows (generations_key_queued_idx):
      -- one index probe, whatever the backlog, and right whichever transaction committed first.
      (select g.fair_start from generations g
         where g.api_key_id = p.api_key_id and g.status = 'queued' and g.fair_start is not null
           and ${generationQueueSql('g')} = p.queue
         order by g.fair_start desc limit 1) as last_pending
    from unnest(${pairs.map((job) => generationQueue(job.model))}::text[],
                ${pairs.map((job) => job.apiKeyId)}::uuid[]) as p(queue, api_key_id)`.execute(trx);

  const state = new Map(rows.map((row) => [`${row.queue}\n${row.api_key_id}`, row]));
  const finishes = new Map<string, { queue: string; apiKeyId: string; finish: number }>();
  const priorities = new Map<string, number>();
  const rebase = new Set<string>();
  for (const job of jobs) {
    const queue = generationQueue(job.model);
    const pair = `${queue}\n${job.apiKeyId}`;
    const row = state.get(pair);
    if (!row) throw new Error(`no fair-queue state read for ${pair}`);
    const turn = turnFor(job.weight);
    // V: the head's start, so an arriving key takes its turn right after the head (a tie: the head
    // was there first); with nothing waiting, the latest finish handed out.
    const virtual = row.head_priority !== null ? -row.head_priority : (row.max_finish ?? 0);
    let finish = finishes.get(pair)?.finish;
    if (finish === undefined) {
      finish =
        row.last_pending !== null
          ? row.last_pending + turn
          : Math.min(row.last_finish ?? virtual, virtual + turn);
    }
    const start = Math.max(virtual, finish);
    priorities.set(job.id, -start);
    finishes.set(pair, { queue, apiKeyId: job.apiKeyId, finish: start + turn });
    if (start + turn > REBASE_AT) rebase.add(queue);
  }

  const idleQueues = new Map(
    rows.filter((row) => row.head_priority === null).map((row) => [row.queue, row.prefetched] as const),
  );
  return { priorities, finishes: [...finishes.values()], rebase: [...rebase], idleQueues };
}

/**
 * Shifts a queue's virtual times back towards zero, keeping their order, before they outgrow
 * pg-boss's 32-bit priority (after about REBASE_AT / TURN turns of a queue that never empties).
 * Takes the queue's lock exclusively, so no create computes a start from the old times meanwhile.
 * Returns the shift applied (0 when another process already rebased).
 */
export async function rebaseFairQueue(db: Executor, queue: string, threshold = REBASE_AT): Promise<number> {
  return db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${QUEUE_LOCK}, hashtext(${queue}))`.execute(trx);
    const { rows } = await sql<{ head_priority: number | null; max_finish: number | null }>`
      select (select max(priority) from ${jobTable}
                where name = ${queue} and state < 'active' and not blocked) as head_priority,
             (select max(last_finish) from fair_share where queue = ${queue}) as max_finish`.execute(trx);
    const row = rows[0];
    const highest = row?.max_finish ?? 0;
    if (highest <= threshold) return 0;
    const shift = row?.head_priority != null ? -row.head_priority : highest;
    if (shift <= 0) return 0;
    // Jobs in hand too: one that fails goes back to waiting with the priority it has.
    await sql`update ${jobTable} set priority = priority + ${shift}
      where name = ${queue} and state in ('created', 'retry', 'active')`.execute(trx);
    await sql`update fair_share set last_finish = last_finish - ${shift}, updated_at = now()
      where queue = ${queue}`.execute(trx);
    await sql`update generations g set fair_start = fair_start - ${shift}
      where g.status in ('queued', 'running') and g.fair_start is not null
        and ${generationQueueSql('g')} = ${queue}`.execute(trx);
    return shift;
  });
}

/**
 * Jobs of a queue that a worker has fetched (prefetched) but whose generation has not started: they
 * run before everything still waiting. At most about two per worker (gpu-worker/queue-loop.ts).
 */
function prefetchedSql(queue: ReturnType<typeof sql>) {
  return sql`select a.name, a.id from ${jobTable} a
    join generations q on q.id = a.id and q.status = 'queued'
    where a.name = ${queue} and a.state = 'active'`;
}

/**
 * A queued generation's position (generations ahead of it) in the fair order, for a generations
 * row aliased `alias`: the prefetched jobs of its queue, then the waiting jobs pg-boss will fetch
 * before its own (job_i11). A prefetched generation is next: 0.
 */
export function queuePositionSql(alias: string) {
  const g = (column: string) => sql.ref(`${alias}.${column}`);
  const queue = generationQueueSql(alias);
  return sql<number | null>`case when ${g('status')} = 'queued' then (
    select case when me.state = 'active' then 0 else (
      (select count(*)::int from ${jobTable} j
        where j.name = me.name and j.state < 'active' and not j.blocked and j.priority > me.priority)
      + (select count(*)::int from ${jobTable} j
        where j.name = me.name and j.state < 'active' and not j.blocked and j.priority = me.priority
          and (j.created_on, j.id) < (me.created_on, me.id))
      + (select count(*)::int from (${prefetchedSql(queue)}) p)) end
    from ${jobTable} me where me.name = ${queue} and me.id = ${g('id')}) end`;
}

/**
 * The fair-order positions of several queued generations of some queues (the same count as
 * queuePositionSql). The asked-for jobs are sorted in fetch order and each counts only the waiting
 * jobs between it and the one before it (index range scans on job_i11), so the work is
 * O(waiting jobs ahead of the last of them) however many ids are asked for.
 */
export async function fairQueuePositions(
  db: Executor,
  queues: readonly string[],
  ids: readonly string[],
): Promise<Map<string, number>> {
  if (ids.length === 0 || queues.length === 0) return new Map();
  const names = [...new Set(queues)];
  const { rows } = await sql<{ id: string; position: number }>`
    with prefetched as (
      select a.name, a.id from ${jobTable} a
      join generations q on q.id = a.id and q.status = 'queued'
      where a.name = any(${names}::text[]) and a.state = 'active'
    ),
    asked as (
      select me.id, me.name, me.priority, me.created_on,
        lag(me.priority) over w as prev_priority, lag(me.created_on) over w as prev_created_on,
        lag(me.id) over w as prev_id
      -- One primary-key probe per asked-for job and queue.
      from unnest(${names}::text[]) as n(name)
      cross join unnest(${[...ids]}::uuid[]) as i(id)
      join ${jobTable} me on me.name = n.name and me.id = i.id
      where me.state < 'active' and not me.blocked
      window w as (partition by me.name order by me.priority desc, me.created_on, me.id)
    ),
    counted as (
      -- Jobs at or ahead of k and behind the asked-for job before it: the strictly higher
      -- priorities between the two (an index-only range of job_i11: the bulk), then the ties
      -- at either end (same priority: ordered by created_on, id; rare).
      select k.id, k.name, k.priority, k.created_on,
        (select count(*) from ${jobTable} j
          where j.name = k.name and j.state < 'active' and not j.blocked
            and j.priority > k.priority and j.priority < coalesce(k.prev_priority, ${2 ** 31 - 1}::int))
        + (select count(*) from ${jobTable} j
          where j.name = k.name and j.state < 'active' and not j.blocked
            and j.priority = k.priority and (j.created_on, j.id) <= (k.created_on, k.id)
            and (k.prev_id is null or k.prev_priority <> k.priority
              or (j.created_on, j.id) > (k.prev_created_on, k.prev_id)))
        + (case when k.prev_id is not null and k.prev_priority <> k.priority then (
            select count(*) from ${jobTable} j
            where j.name = k.name and j.state < 'active' and not j.blocked
              and j.priority = k.prev_priority and (j.created_on, j.id) > (k.prev_created_on, k.prev_id))
          else 0 end) as n
      from asked k
    )
    select c.id::text,
      (sum(c.n) over (partition by c.name order by c.priority desc, c.created_on, c.id) - 1
        + (select count(*) from prefetched p where p.name = c.name))::int as position
    from counted c
    union all
    select p.id::text, 0 from prefetched p where p.id = any(${[...ids]}::uuid[])`.execute(db);
  return new Map(rows.map((row) => [row.id, row.position]));
}

/** A generation to create, with what its place in the fair order depends on. */
export interface FairCreate {
  row: NewGeneration & { id: string };
  apiKeyId: string;
  weight: number;
}

/**
 * Writes generations and their jobs in the fair order, inside the caller's create transaction
 * (after lockForCreate): starts assigned in arrival order, rows written with them, jobs inserted
 * with priority −start. The API's create path and the benchmarks both write through this.
 */
export async function enqueueFairly(
  trx: Executor,
  boss: PgBoss,
  creates: readonly FairCreate[],
): Promise<{
  rows: Generation[];
  priorities: Map<string, number>;
  rebase: string[];
  positions?: Map<string, number>;
}> {
  const fair = await assignFairStarts(
    trx,
    creates.map(({ row, apiKeyId, weight }) => ({ id: row.id, model: row.model ?? null, apiKeyId, weight })),
  );
  const newRows = creates.map(({ row }) => ({ ...row, fair_start: -(fair.priorities.get(row.id) ?? 0) }));
  // The keys' new finishes in the rows' statement: one round trip for both.
  const rows =
    newRows.length === 0
      ? []
      : await trx
          .with('fair', (db) =>
            db
              .insertInto('fair_share')
              .values(
                fair.finishes.map((f) => ({ queue: f.queue, api_key_id: f.apiKeyId, last_finish: f.finish })),
              )
              .onConflict((oc) =>
                oc.columns(['queue', 'api_key_id']).doUpdateSet({
                  last_finish: (eb) => eb.ref('excluded.last_finish'),
                  updated_at: sql`now()`,
                }),
              ),
          )
          .insertInto('generations')
          .values(newRows)
          .returningAll()
          .execute();
  await enqueueGenerations(
    boss,
    trx,
    rows.map((row) => ({ id: row.id, model: row.model, priority: fair.priorities.get(row.id) })),
  );
  // Every queue was idle: the positions are known without reading (see FairAssignment.idleQueues).
  const idle = rows.every((row) => fair.idleQueues.has(generationQueue(row.model)));
  let positions: Map<string, number> | undefined;
  if (idle) {
    positions = new Map();
    const byQueue = Map.groupBy(rows, (row) => generationQueue(row.model));
    for (const [queue, group] of byQueue) {
      const ahead = fair.idleQueues.get(queue) ?? 0;
      const order = group
        .map((row) => ({ id: row.id, priority: fair.priorities.get(row.id) ?? 0 }))
        .sort((x, y) => y.priority - x.priority || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
      for (const [rank, job] of order.entries()) positions.set(job.id, ahead + rank);
    }
  }
  return { rows, priorities: fair.priorities, rebase: fair.rebase, positions };
}
