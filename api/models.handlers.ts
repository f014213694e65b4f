import type { RouteHandler } from '@hono/zod-openapi';
import type { Db } from '../db/connect.ts';
import { findModel, listModels, type ModelLoad, modelLoad } from '../db/models.repository.ts';
import { MODEL_ID_PATTERN } from '../db/queue.ts';
import type { Model } from '../db/types.ts';
import type { ApiConfig } from './config.ts';
import type { AppEnv } from './context.ts';
import { apiError } from './errors.ts';
import type { getModelRoute, listModelsRoute } from './models.routes.ts';
import type { ModelResource } from './models.schemas.ts';

export interface ModelDeps {
  db: Db;
  config: Pick<ApiConfig, 'WORKER_STALE_SECONDS'>;
}

const iso = (value: Date | null) => (value === null ? null : value.toISOString());

const NO_LOAD: ModelLoad = { live_workers: 0, queued: 0, running: 0, median_run_ms: null };

function statusOf(row: Model, load: ModelLoad): ModelResource['status'] {
  if (row.retired_at !== null) return 'retired';
  return load.live_workers > 0 ? 'available' : 'no_workers';
}

export function toModelResource(row: Model, load: ModelLoad = NO_LOAD): ModelResource {
  // Every writer validates capabilities first (the worker's mergeCapabilities, the CLI's
  // ModelCapabilitiesSchema), so the row's jsonb has the schema's shape; its sampler names are
  // typed as plain strings in db/types.ts only because db/ does not import the contract.
  const capabilities = row.capabilities as ModelResource['capabilities'];
  return {
    object: 'model',
    id: row.id,
    family: row.family,
    capabilities,
    defaults: {
      width: capabilities.width.default,
      height: capabilities.height.default,
      steps: capabilities.steps.default,
      guidance_scale: capabilities.guidance_scale.default,
      scheduler: capabilities.default_sampler,
    },
    status: statusOf(row, load),
    live_workers: load.live_workers,
    queued: load.queued,
    running: load.running,
    // percentile_cont interpolates between two runs: whole milliseconds are precise enough.
    median_run_ms: load.median_run_ms === null ? null : Math.round(load.median_run_ms),
    content_hash: row.content_hash,
    announced_at: iso(row.announced_at),
    retired_at: iso(row.retired_at),
    created_at: row.created_at.toISOString(),
  };
}

export function listModelsHandler(deps: ModelDeps): RouteHandler<typeof listModelsRoute, AppEnv> {
  return async (c) => {
    const { include_retired: includeRetired } = c.req.valid('query');
    // A fleet serves a handful of models: filtering here keeps the repository's one listing.
    const rows = (await listModels(deps.db)).filter((row) => includeRetired || row.retired_at === null);
    const loads = await modelLoad(
      deps.db,
      rows.map((row) => row.id),
      deps.config.WORKER_STALE_SECONDS,
    );
    const data = rows.map((row) => toModelResource(row, loads.get(row.id)));
    return c.json({ object: 'list' as const, data }, 200);
  };
}

export function getModelHandler(deps: ModelDeps): RouteHandler<typeof getModelRoute, AppEnv> {
  return async (c) => {
    const { id } = c.req.valid('param');
    // An id no model could have names nothing: not found, without a query.
    const row = MODEL_ID_PATTERN.test(id) ? await findModel(deps.db, id) : undefined;
    if (!row) throw apiError('not_found', 'No model with this id.');
    const loads = await modelLoad(deps.db, [row.id], deps.config.WORKER_STALE_SECONDS);
    return c.json(toModelResource(row, loads.get(row.id)), 200);
  };
}
