// Prometheus metrics of one API instance. Request latency, problems and creates are counted as
// they happen, per process; the generations, queue and worker gauges are read from Postgres at
// scrape time, so every replica reports the same fleet-wide numbers and none has to be elected.
// Each app gets its own Registry: tests run several apps in one process.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Handler, MiddlewareHandler } from 'hono';
import { matchedRoutes } from 'hono/route';
import { sql } from 'kysely';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Db } from '../db/connect.ts';
import { countGenerationsByStatus } from '../db/generations.repository.ts';
import { LEGACY_GENERATION_QUEUE, PGBOSS_SCHEMA } from '../db/queue.ts';
import { GENERATION_STATUSES } from '../db/types.ts';
import { listWorkers } from '../db/workers.repository.ts';
import { withDeadline } from '../shared/deadline.ts';
import { METRICS_QUERY_FAILED } from '../shared/log-events.ts';
import type { ApiConfig } from './config.ts';
import type { AppEnv } from './context.ts';
import { apiError, ERROR_CODES, type ProblemObserver } from './errors.ts';

/** Each scrape-time query gets this long (statement_timeout), plus a little to get a connection. */
export const METRICS_QUERY_TIMEOUT_MS = 1000;
const CONNECT_ALLOWANCE_MS = 500;

/** pg-boss job states that mean "not finished": waiting, waiting for a retry, running. */
export const OPEN_JOB_STATES = ['created', 'retry', 'active'] as const;

/** The label of requests no route matched: the raw path would make every scanner a new series. */
export const UNMATCHED_ROUTE = 'unmatched';

// Up to 60 s: `Prefer: wait` holds a request open that long on purpose.
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface ApiMetrics {
  registry: Registry;
  /** Register first: times every request, labelled by the route pattern that matched. */
  middleware: MiddlewareHandler<AppEnv>;
  onProblem: ProblemObserver;
  onGenerationCreated(): void;
  /** GET /metrics. */
  handler: Handler<AppEnv>;
}

export interface MetricsDeps {
  db: Db;
  config: Pick<ApiConfig, 'METRICS_TOKEN' | 'WORKER_STALE_SECONDS'>;
}

/** The pattern (`/v1/generations/:id`) of the route that answered; middleware (`app.use`) is ALL. */
function routePattern(c: Parameters<MiddlewareHandler<AppEnv>>[0]): string {
  return matchedRoutes(c).findLast((route) => route.method !== 'ALL')?.path ?? UNMATCHED_ROUTE;
}

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Compares digests, so neither the token's content nor its length leaks through timing. */
function tokenMatches(header: string | undefined, token: string): boolean {
  const presented = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? '')?.[1];
  return presented !== undefined && timingSafeEqual(digest(presented), digest(token));
}

/** A short transaction whose statement_timeout stops a slow count on the server too, not just here. */
function bounded<T>(db: Db, what: string, query: (trx: Db) => Promise<T>): Promise<T> {
  const run = db.transaction().execute(async (trx) => {
    await sql.raw(`set local statement_timeout = ${METRICS_QUERY_TIMEOUT_MS}`).execute(trx);
    return query(trx);
  });
  return withDeadline(run, METRICS_QUERY_TIMEOUT_MS + CONNECT_ALLOWANCE_MS, what);
}

/**
 * Open generation jobs per model queue and state, with a 0 for every state of every known model
 * (an autoscaler reads a missing series as no data, not as an empty queue). The queue of
 * generations from before models existed is model 'legacy', present while it has open jobs.
 */
async function openJobsByState(db: Db): Promise<{ model: string; state: string; n: number }[]> {
  const prefix = `${LEGACY_GENERATION_QUEUE}/`;
  const { rows } = await sql<{ model: string; state: string; n: number }>`
    with counts as (
      select case when name = ${LEGACY_GENERATION_QUEUE} then 'legacy' else substr(name, ${prefix.length + 1}) end as model,
        state::text as state, count(*)::int as n
      from ${sql.table(`${PGBOSS_SCHEMA}.job`)}
      where (name = ${LEGACY_GENERATION_QUEUE} or name like ${`${prefix}%`})
        and state in (${sql.join([...OPEN_JOB_STATES])})
      group by name, state)
    select model, state, n from counts
    union all
    select m.id, s.state, 0 from models m cross join unnest(${[...OPEN_JOB_STATES]}::text[]) as s(state)
    where not exists (select 1 from counts c where c.model = m.id and c.state = s.state)`.execute(db);
  return rows;
}

export function createApiMetrics(deps: MetricsDeps): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const duration = new Histogram({
    name: 'easel_http_request_duration_seconds',
    help: 'HTTP requests by method, matched route pattern and status.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const problems = new Counter({
    name: 'easel_http_problems_total',
    help: 'problem+json responses by error code.',
    labelNames: ['code'] as const,
    registers: [registry],
  });
  // Every code from the first scrape on, so rate() sees the first occurrence of each.
  for (const code of ERROR_CODES) problems.inc({ code }, 0);
  const created = new Counter({
    name: 'easel_generations_created_total',
    help: 'Generations accepted by this process (idempotent replays not counted).',
    registers: [registry],
  });
  const scrapeErrors = new Counter({
    name: 'easel_metrics_scrape_errors_total',
    help: 'Scrape-time queries that failed or timed out; their gauges were left out of that scrape.',
    labelNames: ['query'] as const,
    registers: [registry],
  });
  for (const query of ['generations', 'queue_jobs', 'workers']) scrapeErrors.inc({ query }, 0);

  const middleware: MiddlewareHandler<AppEnv> = async (c, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      duration.observe(
        { method: c.req.method, route: routePattern(c), status: String(c.res.status) },
        (performance.now() - started) / 1000,
      );
    }
  };

  const handler: Handler<AppEnv> = async (c) => {
    const token = deps.config.METRICS_TOKEN;
    if (token !== undefined && !tokenMatches(c.req.header('Authorization'), token)) {
      throw apiError('unauthorized', 'Send the metrics token as "Authorization: Bearer <METRICS_TOKEN>".');
    }
    const { db } = deps;
    const [generations, jobs, workers] = await Promise.allSettled([
      bounded(db, 'generations count', countGenerationsByStatus),
      bounded(db, 'queue jobs count', openJobsByState),
      bounded(db, 'live workers', (trx) =>
        listWorkers(trx, {
          staleAfterSeconds: deps.config.WORKER_STALE_SECONDS,
          includeStale: false,
          limit: 10_000,
        }),
      ),
    ]);

    // A gauge whose query failed is left out rather than reported as 0: "no data" must not
    // read as "empty queue" on a dashboard or satisfy an alert.
    const scrape = new Registry();
    const failed = (query: string, result: PromiseRejectedResult) => {
      scrapeErrors.inc({ query });
      c.get('logger').warn({ err: result.reason, query }, METRICS_QUERY_FAILED);
    };
    if (generations.status === 'fulfilled') {
      const gauge = new Gauge({
        name: 'easel_generations',
        help: 'Generations by status, across all API keys (read from Postgres at scrape time).',
        labelNames: ['status'] as const,
        registers: [scrape],
      });
      for (const status of GENERATION_STATUSES) gauge.set({ status }, generations.value.get(status) ?? 0);
    } else failed('generations', generations);
    if (jobs.status === 'fulfilled') {
      const gauge = new Gauge({
        name: 'easel_queue_jobs',
        help: 'Unfinished generation jobs by model queue and state (read at scrape time).',
        labelNames: ['model', 'state'] as const,
        registers: [scrape],
      });
      for (const { model, state, n } of jobs.value) gauge.set({ model, state }, n);
    } else failed('queue_jobs', jobs);
    if (workers.status === 'fulfilled') {
      const gauge = new Gauge({
        name: 'easel_workers_live',
        help: 'Workers that heartbeated within WORKER_STALE_SECONDS and have not stopped.',
        registers: [scrape],
      });
      gauge.set(workers.value.length);
    } else failed('workers', workers);

    const body = await Registry.merge([registry, scrape]).metrics();
    return c.body(body, 200, { 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' });
  };

  return {
    registry,
    middleware,
    onProblem: (code) => problems.inc({ code }),
    onGenerationCreated: () => created.inc(),
    handler,
  };
}
