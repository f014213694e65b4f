// Webhook events, their delivery log and the per-key signing secrets.
import { randomUUID } from 'node:crypto';
import { type Kysely, sql, type Transaction } from 'kysely';
import type { PgBoss } from 'pg-boss';
import { PGBOSS_SCHEMA } from './queue.ts';
import type {
  Database,
  Generation,
  WebhookDelivery,
  WebhookDeliveryOutcome,
  WebhookDisabledUrl,
  WebhookEvent,
  WebhookEventStatus,
  WebhookEventType,
} from './types.ts';
import { sendWebhookJob, WEBHOOK_QUEUE } from './webhook-queue.ts';

type Executor = Kysely<Database>;

/** The events sent when a request names a webhook_url but no webhook_events. */
export const DEFAULT_WEBHOOK_EVENTS: readonly WebhookEventType[] = [
  'generation.completed',
  'generation.failed',
  'generation.canceled',
];

/** Whether a generation asked for this event (its webhook settings never change after creation). */
export function wantsWebhookEvent(
  generation: Pick<Generation, 'webhook_url' | 'webhook_events'>,
  type: WebhookEventType,
): boolean {
  return Boolean(generation.webhook_url) && (generation.webhook_events?.includes(type) ?? false);
}

/** The event a generation status means. */
export function eventTypeForStatus(status: Generation['status']): WebhookEventType | undefined {
  switch (status) {
    case 'running':
      return 'generation.started';
    case 'succeeded':
      return 'generation.completed';
    case 'failed':
      return 'generation.failed';
    case 'canceled':
      return 'generation.canceled';
    default:
      return undefined;
  }
}

/**
 * Records the event and queues its first attempt, in the caller's transaction (the one that
 * changed the status): the event exists exactly when the status change does. Does nothing when
 * the generation has no webhook_url or did not ask for this event type. Without `boss` the
 * event is still recorded and the sender's recovery sweep queues it. When the key has disabled
 * the URL (a 410), the event is recorded as skipped (a `skipped_disabled` entry in the delivery
 * log) and nothing is queued.
 */
export async function enqueueWebhookEvent(
  trx: Executor,
  boss: PgBoss | undefined,
  generation: Generation,
  type: WebhookEventType,
): Promise<WebhookEvent | undefined> {
  const url = generation.webhook_url;
  if (!url || !wantsWebhookEvent(generation, type)) return undefined;
  // The disabled-URL check rides on the insert: no extra round trip for the usual case.
  const { disabled_url_id: disabledUrlId, ...event } = await trx
    .insertInto('webhook_events')
    .values({
      id: `evt_${randomUUID()}`,
      generation_id: generation.id,
      api_key_id: generation.api_key_id,
      type,
      url,
      snapshot: JSON.stringify(generation),
      next_attempt_at: sql<Date>`now()`,
    })
    .returningAll()
    .returning((eb) =>
      eb
        .selectFrom('webhook_disabled_urls as w')
        .select('w.id')
        .where('w.api_key_id', '=', generation.api_key_id)
        .where('w.url', '=', url)
        .as('disabled_url_id'),
    )
    .executeTakeFirstOrThrow();
  if (disabledUrlId) {
    const disabled = await trx
      .selectFrom('webhook_disabled_urls')
      .selectAll()
      .where('id', '=', disabledUrlId)
      .executeTakeFirst();
    const skipped = disabled ? await recordSkippedAttempt(trx, event, 1, disabled, 'disabled') : undefined;
    if (skipped) return skipped.event;
  }
  if (boss) await sendWebhookJob(boss, trx, { v: 1, event_id: event.id, attempt: 1 });
  return event;
}

/**
 * Runs a status change and enqueues the webhook event its result calls for, in one transaction
 * (or in the caller's, when `db` is one already). `fn` returns the updated row, or undefined
 * when nothing changed.
 */
export async function withWebhookEvent<T extends Generation | undefined>(
  db: Executor,
  boss: PgBoss | undefined,
  fn: (trx: Executor) => Promise<T>,
): Promise<T> {
  const run = async (trx: Executor) => {
    const row = await fn(trx);
    const type = row ? eventTypeForStatus(row.status) : undefined;
    if (row && type) await enqueueWebhookEvent(trx, boss, row, type);
    return row;
  };
  return db.isTransaction ? run(db) : db.transaction().execute((trx: Transaction<Database>) => run(trx));
}

const DATE_FIELDS = ['created_at', 'started_at', 'finished_at', 'updated_at', 'cancel_requested_at'] as const;

/** The generations row an event recorded, with its dates revived. */
export function generationFromSnapshot(snapshot: Record<string, unknown>): Generation {
  const row: Record<string, unknown> = { ...snapshot };
  for (const field of DATE_FIELDS) {
    const value = row[field];
    row[field] = typeof value === 'string' ? new Date(value) : (value ?? null);
  }
  return row as unknown as Generation;
}

export async function findWebhookEvent(db: Executor, id: string): Promise<WebhookEvent | undefined> {
  return db.selectFrom('webhook_events').selectAll().where('id', '=', id).executeTakeFirst();
}

export interface AttemptRecord {
  event: WebhookEvent;
  attempt: number;
  url: string;
  statusCode: number | null;
  latencyMs: number;
  error: string | null;
  responseBody: string | null;
  /** The event's status after this attempt; undefined leaves it as it is. */
  status?: WebhookEventStatus;
  nextAttemptAt: Date | null;
  outcome: WebhookDeliveryOutcome;
}

/**
 * Records an attempt in the log and on its event, unless the event already counts this attempt
 * (a job retried after a crash between commit and completion): then returns undefined.
 */
export async function recordWebhookAttempt(trx: Executor, record: AttemptRecord) {
  const updated = await trx
    .updateTable('webhook_events')
    .set({
      attempts: record.attempt,
      ...(record.status ? { status: record.status } : {}),
      ...(record.status === 'delivered' ? { delivered_at: sql<Date>`now()` } : {}),
      next_attempt_at: record.nextAttemptAt,
    })
    .where('id', '=', record.event.id)
    .where('attempts', '<', record.attempt)
    .returningAll()
    .executeTakeFirst();
  if (!updated) return undefined;
  const delivery = await trx
    .insertInto('webhook_deliveries')
    .values({
      event_id: record.event.id,
      url: record.url,
      attempt: record.attempt,
      status_code: record.statusCode,
      latency_ms: Math.round(record.latencyMs),
      error: record.error,
      response_body: record.responseBody,
      next_attempt_at: record.nextAttemptAt,
      outcome: record.outcome,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { event: updated, delivery };
}

/** Why an attempt to a disabled URL was skipped: the delivery log's `error`. */
export function disabledUrlReason(disabled: Pick<WebhookDisabledUrl, 'id' | 'disabled_at'>): string {
  return (
    `not sent: the receiver answered 410 Gone at ${disabled.disabled_at.toISOString()}, so this URL is ` +
    `disabled for this API key; re-enable it with DELETE /v1/webhooks/disabled-urls/${disabled.id}`
  );
}

/** The key's disabled-URL entry for `url`, if the URL is disabled. */
export async function findDisabledWebhookUrl(
  db: Executor,
  apiKeyId: string,
  url: string,
): Promise<WebhookDisabledUrl | undefined> {
  return db
    .selectFrom('webhook_disabled_urls')
    .selectAll()
    .where('api_key_id', '=', apiKeyId)
    .where('url', '=', url)
    .executeTakeFirst();
}

/**
 * Records attempt `attempt` of `event` as skipped (nothing sent, the URL is disabled). `status`
 * is the event's status afterwards (undefined for a redelivery: it leaves the event as it is).
 */
export async function recordSkippedAttempt(
  trx: Executor,
  event: WebhookEvent,
  attempt: number,
  disabled: Pick<WebhookDisabledUrl, 'id' | 'disabled_at'>,
  status: WebhookEventStatus | undefined,
) {
  return recordWebhookAttempt(trx, {
    event,
    attempt,
    url: event.url,
    statusCode: null,
    latencyMs: 0,
    error: disabledUrlReason(disabled),
    responseBody: null,
    status,
    nextAttemptAt: null,
    outcome: 'skipped_disabled',
  });
}

/**
 * 410 Gone: the receiver retired the URL. Remembers it as disabled for the key (kept until the
 * key re-enables it) and skips the key's events pending to it now; their delivery log says so.
 * Events in the middle of an attempt are left to the sender, which checks before every attempt.
 */
export async function disableWebhookUrl(
  trx: Executor,
  apiKeyId: string,
  url: string,
  eventId: string | null,
): Promise<{ disabled: WebhookDisabledUrl; skipped: number }> {
  const disabled = await trx
    .insertInto('webhook_disabled_urls')
    .values({ api_key_id: apiKeyId, url, event_id: eventId })
    // Already disabled (two 410s at once): keep the first, but return it.
    .onConflict((oc) =>
      oc.columns(['api_key_id', 'url']).doUpdateSet({ url: (eb) => eb.ref('excluded.url') }),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
  const skipped = await trx
    .updateTable('webhook_events as e')
    .set({ status: 'disabled', next_attempt_at: null, attempts: sql<number>`e.attempts + 1` })
    .where('e.api_key_id', '=', apiKeyId)
    .where('e.url', '=', url)
    .where('e.status', '=', 'pending')
    .where(
      sql<boolean>`not exists (select 1 from ${sql.table(`${PGBOSS_SCHEMA}.job`)} j
        where j.name = ${WEBHOOK_QUEUE} and j.state = 'active' and j.data->>'event_id' = e.id)`,
    )
    .returning(['e.id', 'e.attempts'])
    .execute();
  if (skipped.length > 0) {
    const error = disabledUrlReason(disabled);
    await trx
      .insertInto('webhook_deliveries')
      .values(
        skipped.map((e) => ({
          event_id: e.id,
          url,
          attempt: e.attempts,
          status_code: null,
          latency_ms: 0,
          error,
          response_body: null,
          next_attempt_at: null,
          outcome: 'skipped_disabled' as const,
        })),
      )
      .execute();
  }
  return { disabled, skipped: skipped.length };
}

/** The URLs a key has disabled (410 Gone), oldest first. */
export async function listDisabledWebhookUrls(db: Executor, apiKeyId: string): Promise<WebhookDisabledUrl[]> {
  return db
    .selectFrom('webhook_disabled_urls')
    .selectAll()
    .where('api_key_id', '=', apiKeyId)
    .orderBy('disabled_at')
    .orderBy('id')
    .execute();
}

/**
 * Re-enables one of the key's disabled URLs, by the entry's id or by the URL: events written from
 * now on are sent to it again (the ones skipped meanwhile stay skipped; redeliver them if wanted).
 * Returns the removed entry, or undefined when the key had no such entry.
 */
export async function enableWebhookUrl(
  db: Executor,
  apiKeyId: string,
  which: { id: string } | { url: string },
): Promise<WebhookDisabledUrl | undefined> {
  let query = db.deleteFrom('webhook_disabled_urls').where('api_key_id', '=', apiKeyId);
  query = 'id' in which ? query.where('id', '=', which.id) : query.where('url', '=', which.url);
  return query.returningAll().executeTakeFirst();
}

export type DeliveryLogEntry = WebhookDelivery & { type: WebhookEventType };

/** The delivery log of one owner's generation, oldest first. */
export async function listWebhookDeliveries(
  db: Executor,
  generationId: string,
  apiKeyId: string,
): Promise<DeliveryLogEntry[]> {
  return db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('webhook_events as e', 'e.id', 'd.event_id')
    .selectAll('d')
    .select('e.type')
    .where('e.generation_id', '=', generationId)
    .where('e.api_key_id', '=', apiKeyId)
    .orderBy('d.created_at')
    .orderBy('d.attempt')
    .execute();
}

export async function findWebhookDeliveryForOwner(db: Executor, deliveryId: string, apiKeyId: string) {
  return db
    .selectFrom('webhook_deliveries as d')
    .innerJoin('webhook_events as e', 'e.id', 'd.event_id')
    .selectAll('e')
    .where('d.id', '=', deliveryId)
    .where('e.api_key_id', '=', apiKeyId)
    .executeTakeFirst();
}

/** Queues one more attempt of an event, now (a client's redelivery). Returns its attempt number. */
export async function queueRedelivery(trx: Executor, boss: PgBoss, event: WebhookEvent): Promise<number> {
  const locked = await trx
    .selectFrom('webhook_events')
    .select(['id', 'attempts'])
    .where('id', '=', event.id)
    .forUpdate()
    .executeTakeFirstOrThrow();
  const attempt = locked.attempts + 1;
  await sendWebhookJob(boss, trx, { v: 1, event_id: event.id, attempt, manual: true });
  return attempt;
}

/**
 * Pending events with no job that could deliver them (recorded without a queue, or their job
 * failed for good), due for longer than `graceSeconds`.
 */
export async function findOrphanedWebhookEvents(db: Executor, graceSeconds: number, limit = 100) {
  return db
    .selectFrom('webhook_events as e')
    .select(['e.id', 'e.attempts'])
    .where('e.status', '=', 'pending')
    .where(
      sql<boolean>`coalesce(e.next_attempt_at, e.created_at) < now() - make_interval(secs => ${graceSeconds})`,
    )
    .where(
      sql<boolean>`not exists (select 1 from ${sql.table(`${PGBOSS_SCHEMA}.job`)} j
        where j.name = ${WEBHOOK_QUEUE} and j.state in ('created', 'retry', 'active')
          and j.data->>'event_id' = e.id)`,
    )
    .orderBy('e.created_at')
    .limit(limit)
    .execute();
}

export interface WebhookSecrets {
  current: string;
  /** The pre-rotation secret while it is still valid. */
  previous: string | null;
  previousExpiresAt: Date | null;
}

export async function getWebhookSecrets(db: Executor, apiKeyId: string): Promise<WebhookSecrets | undefined> {
  const row = await db
    .selectFrom('api_keys')
    .select([
      'webhook_secret',
      sql<
        string | null
      >`case when webhook_secret_previous_expires_at > now() then webhook_secret_previous end`.as('previous'),
      sql<Date | null>`case when webhook_secret_previous_expires_at > now() then webhook_secret_previous_expires_at end`.as(
        'previous_expires_at',
      ),
    ])
    .where('id', '=', apiKeyId)
    .executeTakeFirst();
  if (!row) return undefined;
  return { current: row.webhook_secret, previous: row.previous, previousExpiresAt: row.previous_expires_at };
}

/**
 * A new secret for the key; the old one keeps signing (a second signature) for `overlapSeconds`
 * so receivers can switch without dropping events. Returns the new secret.
 */
export async function rotateWebhookSecret(
  db: Executor,
  keyId: string,
  overlapSeconds: number,
): Promise<string> {
  // The column's default (migration 0005) is the one secret generator, for new keys and rotations.
  const row = await db
    .updateTable('api_keys')
    .set({
      webhook_secret_previous: sql<string>`webhook_secret`,
      webhook_secret_previous_expires_at: sql<Date>`now() + make_interval(secs => ${overlapSeconds})`,
      webhook_secret: sql<string>`default`,
    })
    .where('id', '=', keyId)
    .returning('webhook_secret')
    .executeTakeFirstOrThrow();
  return row.webhook_secret;
}
