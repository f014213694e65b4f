import { randomInt, randomUUID } from 'node:crypto';
import type { RouteHandler } from '@hono/zod-openapi';
import type { PgBoss } from 'pg-boss';
import type { Db } from '../db/connect.ts';
import { findGenerationForOwner, insertGeneration, queuePosition } from '../db/generations.repository.ts';
import type { ObjectStore } from '../db/object-store.ts';
import { enqueueGeneration } from '../db/queue.ts';
import type { Generation } from '../db/types.ts';
import type { ApiConfig } from './config.ts';
import type { AppEnv } from './context.ts';
import { apiError } from './errors.ts';
import type { createGenerationRoute, getGenerationRoute } from './generations.routes.ts';
import type { GenerationResource } from './generations.schemas.ts';

export interface GenerationDeps {
  db: Db;
  boss: PgBoss;
  store: ObjectStore;
  config: Pick<ApiConfig, 'MAX_PIXELS' | 'RESULT_URL_TTL_SECONDS'>;
}

const SEED_LIMIT = 2 ** 32; // seeds are uint32: 0..2^32-1

const iso = (value: Date | null) => (value === null ? null : value.toISOString());

/** The public resource; output URLs are presigned here, on every read, never stored. */
export async function toResource(
  row: Generation,
  store: ObjectStore,
  ttlSeconds: number,
  position: number | null,
): Promise<GenerationResource> {
  const expiresAt = new Date(Date.now() + ttlSeconds * 1000).toISOString();
  const outputs = await Promise.all(
    [...row.outputs]
      .sort((a, b) => a.index - b.index)
      .map(async (o) => ({
        index: o.index,
        url: await store.presignGet(o.key, ttlSeconds),
        expires_at: expiresAt,
        width: o.width,
        height: o.height,
        content_type: o.content_type,
        bytes: o.bytes,
        sha256: o.sha256,
      })),
  );
  return {
    id: row.id,
    object: 'generation',
    status: row.status,
    prompt: row.prompt,
    negative_prompt: row.negative_prompt,
    width: row.width,
    height: row.height,
    steps: row.steps,
    guidance_scale: row.guidance_scale,
    seed: row.seed,
    num_images: row.num_images,
    scheduler: row.scheduler,
    queue_position: row.status === 'queued' ? position : null,
    outputs,
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    attempts: row.attempts,
    prompt_truncated: row.prompt_truncated,
    timings: row.timings ?? {},
    created_at: row.created_at.toISOString(),
    started_at: iso(row.started_at),
    finished_at: iso(row.finished_at),
  };
}

export function createGenerationHandler(
  deps: GenerationDeps,
): RouteHandler<typeof createGenerationRoute, AppEnv> {
  return async (c) => {
    const input = c.req.valid('json');
    const pixels = input.width * input.height;
    if (pixels > deps.config.MAX_PIXELS) {
      const message = `width*height must not exceed ${deps.config.MAX_PIXELS} pixels`;
      throw apiError(
        'pixel_limit_exceeded',
        `width*height is ${pixels} pixels; the limit is ${deps.config.MAX_PIXELS}.`,
        {
          errors: [
            { field: 'width', message },
            { field: 'height', message },
          ],
        },
      );
    }
    const apiKey = c.get('apiKey');
    const id = randomUUID();
    const seed = input.seed ?? randomInt(0, SEED_LIMIT);

    // Row and job commit together: no accepted generation without its job, no job without its row.
    const { row, position } = await deps.db.transaction().execute(async (trx) => {
      const inserted = await insertGeneration(trx, {
        id,
        api_key_id: apiKey.id,
        prompt: input.prompt,
        negative_prompt: input.negative_prompt,
        width: input.width,
        height: input.height,
        steps: input.steps,
        guidance_scale: input.guidance_scale,
        num_images: input.num_images,
        seed,
      });
      await enqueueGeneration(deps.boss, trx, id);
      return { row: inserted, position: await queuePosition(trx, inserted) };
    });

    c.get('logger').info({ generation_id: id, api_key_id: apiKey.id }, 'generation queued');
    const resource = await toResource(row, deps.store, deps.config.RESULT_URL_TTL_SECONDS, position);
    c.header('Location', `/v1/generations/${id}`);
    return c.json(resource, 202);
  };
}

export function getGenerationHandler(deps: GenerationDeps): RouteHandler<typeof getGenerationRoute, AppEnv> {
  return async (c) => {
    const { id } = c.req.valid('param');
    const row = await findGenerationForOwner(deps.db, id, c.get('apiKey').id);
    if (!row) throw apiError('not_found', 'No generation with this id.');
    const position = row.status === 'queued' ? await queuePosition(deps.db, row) : null;
    const resource = await toResource(row, deps.store, deps.config.RESULT_URL_TTL_SECONDS, position);
    return c.json(resource, 200);
  };
}
