import type { RouteHandler } from '@hono/zod-openapi';
import type { Db } from '../db/connect.ts';
import type { Worker } from '../db/types.ts';
import { listWorkers } from '../db/workers.repository.ts';
import type { ApiConfig } from './config.ts';
import type { AppEnv } from './context.ts';
import type { listWorkersRoute } from './workers.routes.ts';
import type { WorkerResource } from './workers.schemas.ts';

export interface WorkerDeps {
  db: Db;
  config: Pick<ApiConfig, 'WORKER_STALE_SECONDS'>;
}

const iso = (value: Date | null) => (value === null ? null : value.toISOString());

export function toWorkerResource(row: Worker & { live: boolean }): WorkerResource {
  return {
    id: row.id,
    object: 'worker',
    hostname: row.hostname,
    pid: row.pid,
    provider: row.provider,
    model: row.model,
    translator: row.translator,
    current_generation_id: row.current_generation_id,
    jobs_succeeded: row.jobs_succeeded,
    jobs_failed: row.jobs_failed,
    started_at: row.started_at.toISOString(),
    last_heartbeat_at: row.last_heartbeat_at.toISOString(),
    stopped_at: iso(row.stopped_at),
    live: row.live,
  };
}

export function listWorkersHandler(deps: WorkerDeps): RouteHandler<typeof listWorkersRoute, AppEnv> {
  return async (c) => {
    const { include_stale: includeStale } = c.req.valid('query');
    const rows = await listWorkers(deps.db, {
      staleAfterSeconds: deps.config.WORKER_STALE_SECONDS,
      includeStale,
    });
    return c.json({ object: 'list' as const, data: rows.map(toWorkerResource) }, 200);
  };
}
