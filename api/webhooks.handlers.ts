import type { RouteHandler } from '@hono/zod-openapi';
import type { PgBoss } from 'pg-boss';
import type { Db } from '../db/connect.ts';
import { findGenerationForOwner } from '../db/generations.repository.ts';
import {
  enableWebhookUrl,
  findWebhookDeliveryForOwner,
  getWebhookSecrets,
  listDisabledWebhookUrls,
  listWebhookDeliveries,
  queueRedelivery,
} from '../db/webhooks.repository.ts';
import type { AppEnv } from './context.ts';
import { apiError } from './errors.ts';
import { bindGenerationId } from './middleware.ts';
import type {
  enableWebhookUrlRoute,
  getWebhookSecretRoute,
  listDisabledWebhookUrlsRoute,
  listWebhookDeliveriesRoute,
  redeliverWebhookRoute,
} from './webhooks.routes.ts';

export interface WebhookDeps {
  db: Db;
  boss: PgBoss;
}

const iso = (value: Date | null) => (value === null ? null : value.toISOString());

export function getWebhookSecretHandler(
  deps: WebhookDeps,
): RouteHandler<typeof getWebhookSecretRoute, AppEnv> {
  return async (c) => {
    const secrets = await getWebhookSecrets(deps.db, c.get('apiKey').id);
    if (!secrets) throw apiError('not_found');
    return c.json(
      {
        object: 'webhook_secret' as const,
        secret: secrets.current,
        previous_secret_expires_at: iso(secrets.previousExpiresAt),
      },
      200,
    );
  };
}

export function listWebhookDeliveriesHandler(
  deps: WebhookDeps,
): RouteHandler<typeof listWebhookDeliveriesRoute, AppEnv> {
  return async (c) => {
    const { id } = c.req.valid('param');
    bindGenerationId(c, id);
    const apiKeyId = c.get('apiKey').id;
    if (!(await findGenerationForOwner(deps.db, id, apiKeyId))) {
      throw apiError('not_found', 'No generation with this id.');
    }
    const rows = await listWebhookDeliveries(deps.db, id, apiKeyId);
    const data = rows.map((d) => ({
      id: d.id,
      object: 'webhook_delivery' as const,
      webhook_id: d.event_id,
      type: d.type,
      url: d.url,
      attempt: d.attempt,
      status_code: d.status_code,
      latency_ms: d.latency_ms,
      outcome: d.outcome,
      error: d.error,
      next_attempt_at: iso(d.next_attempt_at),
      created_at: d.created_at.toISOString(),
    }));
    return c.json({ object: 'list' as const, data }, 200);
  };
}

export function redeliverWebhookHandler(
  deps: WebhookDeps,
): RouteHandler<typeof redeliverWebhookRoute, AppEnv> {
  return async (c) => {
    const { id } = c.req.valid('param');
    const event = await findWebhookDeliveryForOwner(deps.db, id, c.get('apiKey').id);
    if (!event) throw apiError('not_found', 'No webhook delivery with this id.');
    bindGenerationId(c, event.generation_id);
    const attempt = await deps.db.transaction().execute((trx) => queueRedelivery(trx, deps.boss, event));
    c.get('logger').info({ webhook_id: event.id, attempt }, 'webhook redelivery queued');
    return c.json({ object: 'webhook_redelivery' as const, webhook_id: event.id, attempt }, 202);
  };
}

export function listDisabledWebhookUrlsHandler(
  deps: WebhookDeps,
): RouteHandler<typeof listDisabledWebhookUrlsRoute, AppEnv> {
  return async (c) => {
    const rows = await listDisabledWebhookUrls(deps.db, c.get('apiKey').id);
    const data = rows.map((d) => ({
      id: d.id,
      object: 'disabled_webhook_url' as const,
      url: d.url,
      disabled_at: d.disabled_at.toISOString(),
      webhook_id: d.event_id,
    }));
    return c.json({ object: 'list' as const, data }, 200);
  };
}

export function enableWebhookUrlHandler(
  deps: WebhookDeps,
): RouteHandler<typeof enableWebhookUrlRoute, AppEnv> {
  return async (c) => {
    const { id } = c.req.valid('param');
    const enabled = await enableWebhookUrl(deps.db, c.get('apiKey').id, { id });
    if (!enabled) throw apiError('not_found', 'No disabled webhook URL with this id.');
    c.get('logger').info({ disabled_url_id: id, url: enabled.url }, 'webhook URL re-enabled');
    return c.body(null, 204);
  };
}
