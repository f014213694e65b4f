// The models the fleet serves. A worker announces the model it holds each time it starts (its
// family, capabilities and the content hash of its files); an operator registers a model ahead of
// its workers or retires it. The API validates requests against these rows, so it knows what the
// fleet serves even while no worker of a model is up.
import { type Kysely, sql } from 'kysely';
import type { Database, Model, ModelCapabilities } from './types.ts';

type Executor = Kysely<Database>;

export interface ModelAnnouncement {
  id: string;
  family: string;
  capabilities: ModelCapabilities;
  contentHash: string;
}

/**
 * A worker's announcement: creates the model's row or refreshes its family, capabilities and
 * hash. It does not un-retire a model (an operator retired it; its workers still drain what is
 * queued). Returns the hash the row held before, so the worker can warn about changed files.
 */
export async function announceModel(
  db: Executor,
  model: ModelAnnouncement,
): Promise<{ previousHash: string | null; retired: boolean }> {
  const { rows } = await sql<{ previous_hash: string | null; retired: boolean }>`
    with previous as (select content_hash from models where id = ${model.id})
    insert into models (id, family, capabilities, content_hash, announced_at)
    values (${model.id}, ${model.family}, ${JSON.stringify(model.capabilities)}::jsonb, ${model.contentHash}, now())
    on conflict (id) do update set
      family = excluded.family,
      capabilities = excluded.capabilities,
      content_hash = excluded.content_hash,
      announced_at = now(),
      updated_at = now()
    returning (select content_hash from previous) as previous_hash, retired_at is not null as retired`.execute(
    db,
  );
  const row = rows[0];
  return { previousHash: row?.previous_hash ?? null, retired: row?.retired ?? false };
}

export interface ModelRegistration {
  id: string;
  family: string;
  capabilities: ModelCapabilities;
}

/**
 * An operator's registration: the API accepts generations for it before any of its workers has
 * started. Registering a retired model returns it to service. A worker's later announcement
 * replaces the capabilities with what its folder says.
 */
export async function registerModel(db: Executor, model: ModelRegistration): Promise<Model> {
  return db
    .insertInto('models')
    .values({ id: model.id, family: model.family, capabilities: JSON.stringify(model.capabilities) })
    .onConflict((oc) =>
      oc.column('id').doUpdateSet({
        family: model.family,
        capabilities: JSON.stringify(model.capabilities),
        retired_at: null,
        updated_at: sql`now()`,
      }),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Retires a model: no new generations for it. Returns the row, or undefined for an unknown id. */
export async function retireModel(db: Executor, id: string): Promise<Model | undefined> {
  return db
    .updateTable('models')
    .set({ retired_at: sql`coalesce(retired_at, now())`, updated_at: sql`now()` })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

export async function findModel(db: Executor, id: string): Promise<Model | undefined> {
  return db.selectFrom('models').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Every model, retired ones included, by id. */
export async function listModels(db: Executor): Promise<Model[]> {
  return db.selectFrom('models').selectAll().orderBy('id').execute();
}

export interface ModelLoad {
  /** Workers holding it that heartbeated within `staleAfterSeconds` and have not stopped. */
  live_workers: number;
  queued: number;
  running: number;
  /** Median run time (start to finish) of its last RECENT_RUNS succeeded generations; null before any. */
  median_run_ms: number | null;
}

const RECENT_RUNS = 50;

/** Live workers, queued and running generations and recent median run time, per model id. */
export async function modelLoad(
  db: Executor,
  ids: readonly string[],
  staleAfterSeconds: number,
): Promise<Map<string, ModelLoad>> {
  if (ids.length === 0) return new Map();
  const { rows } = await sql<ModelLoad & { id: string }>`
    select m.id,
      (select count(*)::int from workers w
        where w.model_id = m.id and w.stopped_at is null
          and w.last_heartbeat_at > now() - make_interval(secs => ${staleAfterSeconds})) as live_workers,
      (select count(*)::int from generations g where g.model = m.id and g.status = 'queued') as queued,
      (select count(*)::int from generations g where g.model = m.id and g.status = 'running') as running,
      (select percentile_cont(0.5) within group (order by r.ms)::float8 from (
        select extract(epoch from (g.finished_at - g.started_at)) * 1000 as ms from generations g
        where g.model = m.id and g.status = 'succeeded' and g.started_at is not null
        order by g.finished_at desc limit ${RECENT_RUNS}) r) as median_run_ms
    from unnest(${[...ids]}::text[]) as m(id)`.execute(db);
  return new Map(rows.map(({ id, ...load }) => [id, load]));
}
