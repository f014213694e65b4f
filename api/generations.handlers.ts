import { randomInt, randomUUID } from 'node:crypto';
import type { RouteHandler } from '@hono/zod-openapi';
import type { PgBoss } from 'pg-boss';
import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import {
  findGenerationForOwner,
  listGenerations,
  type QueueEstimateInputs,
  queueEstimateInputs,
  queuePosition,
  requestCancel,
} from '../db/generations.repository.ts';
import { cancelGenerationJob } from '../db/queue.ts';
import type { Generation, GenerationStatus } from '../db/types.ts';
import { DEFAULT_WEBHOOK_EVENTS, enqueueWebhookEvent } from '../db/webhooks.repository.ts';
import { GENERATION_LIMITS } from '../shared/generation-contract.ts';
import { toResource } from '../shared/generation-resource.ts';
import {
  GENERATION_QUEUED,
  GENERATION_REPLAYED,
  QUEUED_GENERATION_CANCELED,
  WAITING_FOR_GENERATION,
} from '../shared/log-events.ts';
import { capabilityErrors } from '../shared/model-capabilities.ts';
import type { ObjectStore } from '../shared/object-store.ts';
import { policyFrom } from '../webhooks/policy.ts';
import { checkWebhookUrl } from '../webhooks/ssrf.ts';
import { singleFlight } from './batcher.ts';
import type { ApiConfig } from './config.ts';
import type { AppEnv } from './context.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';
import { apiError } from './errors.ts';
import { createGenerationIntake } from './generation-intake.ts';
import type {
  cancelGenerationRoute,
  createGenerationRoute,
  getGenerationImageRoute,
  getGenerationRoute,
  listGenerationsRoute,
} from './generations.routes.ts';
import { requestHash } from './idempotency.ts';
import { bindGenerationId } from './middleware.ts';
import type { ModelCatalog } from './model-catalog.ts';
import type { StatusListener } from './status-listener.ts';
import { isTerminal, preferredWaitSeconds, waitForTerminal } from './sync-wait.ts';

export interface GenerationDeps {
  db: Db;
  boss: PgBoss;
  store: ObjectStore;
  config: Pick<
    ApiConfig,
    | 'MAX_PIXELS'
    | 'RESULT_URL_TTL_SECONDS'
    | 'MAX_IN_FLIGHT_PER_KEY'
    | 'MAX_QUEUED'
    | 'WEBHOOK_ALLOW_PRIVATE'
    | 'WEBHOOK_ALLOWED_HOSTS'
  >;
  /** The models requests may name, and the default. */
  models: ModelCatalog;
  /** Absent: `Prefer: wait` is ignored. */
  statusListener?: StatusListener;
  /** Warnings the create path has no request to attach to (a failed queue wake-up). */
  logger?: Logger;
  /** Called once per accepted generation (not for idempotent replays): the metrics counter. */
  onGenerationCreated?: () => void;
}

/**
 * The queue estimate's inputs per model, read only for the models of queued generations (two
 * index-backed aggregates each, cheaper than the queue position count itself). Resolves to a
 * lookup by row.
 */
function estimateFor(deps: GenerationDeps) {
  // Reads for one model that arrive while its aggregate runs share it.
  const perModel = new Map<string | null, () => Promise<QueueEstimateInputs>>();
  const inputsOf = (model: string | null) => {
    let read = perModel.get(model);
    if (!read) {
      read = singleFlight(() => queueEstimateInputs(deps.db, model));
      perModel.set(model, read);
    }
    return read();
  };
  return async (rows: readonly Pick<Generation, 'status' | 'model'>[]) => {
    const models = [...new Set(rows.filter((row) => row.status === 'queued').map((row) => row.model))];
    const inputs = new Map(await Promise.all(models.map(async (m) => [m, await inputsOf(m)] as const)));
    return (row: Pick<Generation, 'model'>) => inputs.get(row.model);
  };
}

export function createGenerationHandler(
  deps: GenerationDeps,
): RouteHandler<typeof createGenerationRoute, AppEnv> {
  const estimate = estimateFor(deps);
  const intake = createGenerationIntake(deps);
  return async (c) => {
    const input = c.req.valid('json');
    // The model decides the defaults and what may be asked; nothing is queued that it cannot run.
    const model = await deps.models.resolve(input.model);
    const caps = model.capabilities;
    const params = {
      width: input.width ?? caps.width.default,
      height: input.height ?? caps.height.default,
      steps: input.steps ?? caps.steps.default,
      guidance_scale: input.guidance_scale ?? caps.guidance_scale.default,
      num_images: input.num_images,
      negative_prompt: input.negative_prompt,
      scheduler: input.scheduler,
      karras: input.karras,
    };
    const unsupported = capabilityErrors(params, model.id, caps);
    if (unsupported.length > 0) {
      throw apiError(
        'unsupported_by_model',
        `Model '${model.id}' cannot run ${unsupported.length === 1 ? 'this value' : `these ${unsupported.length} values`}: ` +
          `${unsupported.map((e) => e.field).join(', ')} (its capabilities: GET /v1/models/${model.id}).`,
        { errors: unsupported },
      );
    }
    const pixels = params.width * params.height;
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
    if (input.webhook_url !== undefined) {
      // A literal address is refused now; a hostname is checked on every resolution when sending.
      const check = checkWebhookUrl(input.webhook_url, policyFrom(deps.config));
      if (!check.ok) {
        throw apiError('webhook_url_forbidden', `The webhook URL ${check.reason}.`, {
          errors: [{ field: 'webhook_url', message: check.reason }],
        });
      }
    }
    const apiKey = c.get('apiKey');
    const headers = c.req.valid('header');
    const idempotencyKey = headers['Idempotency-Key'];
    // Hashed as it will run (model and its defaults filled in): the same request spelled with or
    // without the defaults is the same request.
    const hash =
      idempotencyKey === undefined ? undefined : requestHash({ ...input, ...params, model: model.id });
    const listener = deps.statusListener;
    const waitSeconds = listener ? preferredWaitSeconds(headers.Prefer) : undefined;
    const id = randomUUID();
    const seed = input.seed ?? randomInt(GENERATION_LIMITS.seed.min, GENERATION_LIMITS.seed.max + 1);
    // Subscribed before the commit, so a generation that finishes at once cannot slip past.
    let subscription = waitSeconds ? listener?.subscribe(id) : undefined;
    const newRow = {
      id,
      api_key_id: apiKey.id,
      prompt: input.prompt,
      negative_prompt: input.negative_prompt,
      model: model.id,
      width: params.width,
      height: params.height,
      steps: params.steps,
      guidance_scale: params.guidance_scale,
      num_images: input.num_images,
      seed,
      requested_scheduler: input.scheduler ?? null,
      requested_karras: input.karras ?? null,
      webhook_url: input.webhook_url ?? null,
      webhook_events: input.webhook_url ? [...new Set(input.webhook_events ?? DEFAULT_WEBHOOK_EVENTS)] : null,
    };
    // A model registered by an operator may not have its queue yet.
    await deps.models.ensureQueue(model);
    // Row, job and Idempotency-Key claim commit together, batched with the creates arriving
    // alongside (generation-intake.ts): no accepted generation without its job, no job without its row.
    const creating = intake({
      apiKey,
      row: newRow,
      idempotency:
        idempotencyKey !== undefined && hash !== undefined
          ? { key: idempotencyKey, requestHash: hash }
          : undefined,
    }).then((result) => {
      if (!result.ok) throw result.error;
      return 'replayOf' in result
        ? { replay: true as const, original: result.replayOf }
        : { replay: false as const, row: result.row, position: result.position };
    });
    const created = await creating.catch((error: unknown) => {
      subscription?.close();
      throw error;
    });

    try {
      let row: Generation;
      let position: number | null | undefined;
      if (created.replay) {
        const { original } = created;
        if (original.request_hash !== hash) {
          throw apiError(
            'idempotency_key_reused',
            'This Idempotency-Key was used in the last 24 hours with a different request body.',
            { errors: [{ field: 'Idempotency-Key', message: 'already used with a different request body' }] },
          );
        }
        subscription?.close();
        subscription = waitSeconds ? listener?.subscribe(original.generation_id) : undefined;
        const found = await findGenerationForOwner(deps.db, original.generation_id, apiKey.id);
        if (!found) throw new Error(`idempotency key points at missing generation ${original.generation_id}`);
        row = found;
        c.header('Idempotent-Replayed', 'true');
        bindGenerationId(c, row.id);
        c.get('logger').info(GENERATION_REPLAYED);
      } else {
        ({ row, position } = created);
        deps.onGenerationCreated?.();
        bindGenerationId(c, id);
        c.get('logger').info(GENERATION_QUEUED);
      }

      if (subscription && waitSeconds && !isTerminal(row)) {
        c.get('logger').info({ wait_s: waitSeconds }, WAITING_FOR_GENERATION);
        row =
          (await waitForTerminal({
            db: deps.db,
            subscription,
            generationId: row.id,
            apiKeyId: apiKey.id,
            seconds: waitSeconds,
            signal: c.req.raw.signal,
          })) ?? row;
        position = undefined;
      }
      position ??= row.status === 'queued' ? await queuePosition(deps.db, row) : null;
      const resource = await toResource(
        row,
        deps.store,
        deps.config.RESULT_URL_TTL_SECONDS,
        position,
        (await estimate([row]))(row),
      );
      c.header('Location', `/v1/generations/${row.id}`);
      if (waitSeconds) c.header('Preference-Applied', `wait=${waitSeconds}`);
      return waitSeconds && isTerminal(row) ? c.json(resource, 200) : c.json(resource, 202);
    } finally {
      subscription?.close();
    }
  };
}

export function getGenerationHandler(deps: GenerationDeps): RouteHandler<typeof getGenerationRoute, AppEnv> {
  const estimate = estimateFor(deps);
  return async (c) => {
    const { id } = c.req.valid('param');
    bindGenerationId(c, id);
    const row = await findGenerationForOwner(deps.db, id, c.get('apiKey').id);
    if (!row) throw apiError('not_found', 'No generation with this id.');
    const [position, queue] = await Promise.all([
      row.status === 'queued' ? queuePosition(deps.db, row) : null,
      estimate([row]),
    ]);
    const resource = await toResource(
      row,
      deps.store,
      deps.config.RESULT_URL_TTL_SECONDS,
      position,
      queue(row),
    );
    return c.json(resource, 200);
  };
}

/**
 * Queued: canceled at once, its job with it (200). Running: the worker is told and stops at its
 * next step (202, or 200 once stopped within `Prefer: wait`). Canceled: 200, unchanged.
 * Succeeded or failed: 409.
 */
export function cancelGenerationHandler(
  deps: GenerationDeps,
): RouteHandler<typeof cancelGenerationRoute, AppEnv> {
  return async (c) => {
    const { id } = c.req.valid('param');
    bindGenerationId(c, id);
    const apiKey = c.get('apiKey');
    const listener = deps.statusListener;
    const waitSeconds = listener ? preferredWaitSeconds(c.req.valid('header').Prefer) : undefined;
    // Subscribed before the commit: the worker can only stop the generation after it.
    const subscription = waitSeconds ? listener?.subscribe(id) : undefined;
    try {
      const outcome = await deps.db.transaction().execute(async (trx) => {
        const result = await requestCancel(trx, id, apiKey.id);
        if (result.kind === 'canceled') {
          await cancelGenerationJob(deps.boss, trx, result.row);
          await enqueueWebhookEvent(trx, deps.boss, result.row, 'generation.canceled');
        }
        return result;
      });
      if (outcome.kind === 'not_found') throw apiError('not_found', 'No generation with this id.');
      if (outcome.kind === 'finished') {
        throw apiError(
          'generation_finished',
          `The generation has already ${outcome.row.status}; there is nothing to cancel.`,
        );
      }
      const logger = c.get('logger');
      let { row } = outcome;
      if (outcome.kind === 'canceled') logger.info(QUEUED_GENERATION_CANCELED);
      if (outcome.kind === 'requested') {
        logger.info('cancel requested for running generation');
        if (subscription && waitSeconds) {
          row =
            (await waitForTerminal({
              db: deps.db,
              subscription,
              generationId: id,
              apiKeyId: apiKey.id,
              seconds: waitSeconds,
              signal: c.req.raw.signal,
            })) ?? row;
          c.header('Preference-Applied', `wait=${waitSeconds}`);
        }
      }
      const position = row.status === 'queued' ? await queuePosition(deps.db, row) : null;
      const resource = await toResource(row, deps.store, deps.config.RESULT_URL_TTL_SECONDS, position);
      return isTerminal(row) ? c.json(resource, 200) : c.json(resource, 202);
    } finally {
      subscription?.close();
    }
  };
}

export function listGenerationsHandler(
  deps: GenerationDeps,
): RouteHandler<typeof listGenerationsRoute, AppEnv> {
  const estimate = estimateFor(deps);
  return async (c) => {
    const query = c.req.valid('query');
    const apiKeyId = c.get('apiKey').id;
    // Cursors are bound to the key they were handed to: another key's cursor is not ours to read.
    const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, apiKeyId);
    if (query.cursor !== undefined && !after) {
      throw apiError('validation_failed', 'The request query has 1 invalid field.', {
        errors: [{ field: 'cursor', message: 'is not a next_cursor this API returned to this API key' }],
      });
    }
    const { rows, hasMore } = await listGenerations(deps.db, {
      apiKeyId,
      limit: query.limit,
      statuses: query.status?.split(',') as GenerationStatus[] | undefined,
      createdAfter: query.created_after,
      createdBefore: query.created_before,
      after,
    });
    const ttl = deps.config.RESULT_URL_TTL_SECONDS;
    const queue = await estimate(rows);
    const now = Date.now();
    const data = await Promise.all(
      rows.map((row) => toResource(row, deps.store, ttl, row.queue_position, queue(row), now)),
    );
    const last = rows.at(-1);
    return c.json(
      {
        object: 'list' as const,
        data,
        next_cursor: hasMore && last ? encodeCursor(last.position, apiKeyId) : null,
        has_more: hasMore,
      },
      200,
    );
  };
}

/** A redirect to a freshly presigned URL, for clients that want a stable link to an image. */
export function getGenerationImageHandler(
  deps: GenerationDeps,
): RouteHandler<typeof getGenerationImageRoute, AppEnv> {
  return async (c) => {
    const { id, index } = c.req.valid('param');
    bindGenerationId(c, id);
    const row = await findGenerationForOwner(deps.db, id, c.get('apiKey').id);
    const output = row?.status === 'succeeded' ? row.outputs.find((o) => o.index === index) : undefined;
    if (!output) throw apiError('not_found', 'No image with this index for this generation.');
    const url = await deps.store.presignGet(output.key, deps.config.RESULT_URL_TTL_SECONDS);
    // The URL expires: a cached redirect would outlive it.
    c.header('Cache-Control', 'no-store');
    return c.redirect(url, 302);
  };
}
