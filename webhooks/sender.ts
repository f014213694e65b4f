// Works the webhook queue: one job is one attempt. Builds the body from the event's snapshot
// (output URLs presigned now), signs it with the key's secrets, posts it, records the attempt and
// queues the next one on the configured schedule, all in one transaction.
import { sql } from 'kysely';
import type { Job, PgBoss } from 'pg-boss';
import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import type { WebhookDeliveryOutcome, WebhookEventStatus } from '../db/types.ts';
import { sendWebhookJob, webhookJob } from '../db/webhook-queue.ts';
import {
  disabledUrlReason,
  disableWebhookUrl,
  findDisabledWebhookUrl,
  findOrphanedWebhookEvents,
  findWebhookEvent,
  generationFromSnapshot,
  getWebhookSecrets,
  recordSkippedAttempt,
  recordWebhookAttempt,
} from '../db/webhooks.repository.ts';
import { toResource } from '../shared/generation-resource.ts';
import {
  WEBHOOK_ATTEMPT_FAILED,
  WEBHOOK_DELIVERED,
  WEBHOOK_SKIPPED_DISABLED,
  WEBHOOK_URL_DISABLED,
} from '../shared/log-events.ts';
import type { ObjectStore } from '../shared/object-store.ts';
import { type AttemptResult, postWebhook } from './deliver.ts';
import { webhookHeaders } from './signing.ts';
import type { WebhookTargetPolicy } from './ssrf.ts';

export interface SenderDeps {
  db: Db;
  boss: PgBoss;
  store: ObjectStore;
  logger: Logger;
  policy: WebhookTargetPolicy;
  timeoutMs: number;
  /** Delay before each attempt in seconds; its length is the number of scheduled attempts. */
  retrySchedule: readonly number[];
  resultUrlTtlSeconds: number;
  /** Jitter as a fraction of the delay (default 0.1: up to 10 % later). */
  jitter?: number;
  /** Told of every attempt made, with its final outcome (the metrics); must not throw. */
  onAttempt?: (attempt: { kind: AttemptOutcome; latencyMs: number }) => void;
}

/**
 * What an attempt that was made comes to: the HTTP result, except that a retryable failure with
 * no attempt left (the schedule is used up, or a redelivery, which is never retried) is
 * `exhausted`. The word of the log line's `outcome`, the metric label and the delivery log.
 */
export type AttemptOutcome = Exclude<WebhookDeliveryOutcome, 'skipped_disabled'>;

/** `skipped`: a duplicate or unwanted job (nothing recorded); `skipped_disabled`: recorded, not sent. */
export type SendOutcome = 'skipped' | WebhookDeliveryOutcome;

/** The outcome of an attempt whose next attempt (if any) is decided. */
export function attemptOutcome(result: Pick<AttemptResult, 'kind'>, nextAt: Date | null): AttemptOutcome {
  return result.kind === 'retry' && nextAt === null ? 'exhausted' : result.kind;
}

/** The delay before attempt `next` (1-based), or undefined when the schedule is exhausted. */
export function nextDelaySeconds(
  schedule: readonly number[],
  next: number,
  retryAfterSeconds: number | undefined,
  jitter: number,
  random = Math.random,
): number | undefined {
  const base = schedule[next - 1];
  if (base === undefined) return undefined;
  const delay = Math.max(base, retryAfterSeconds ?? 0);
  return delay + delay * jitter * random();
}

export function createWebhookSender(deps: SenderDeps) {
  const { db, boss, logger } = deps;
  const jitter = deps.jitter ?? 0.1;

  async function handle(job: Job<unknown>): Promise<SendOutcome> {
    const parsed = webhookJob.safeParse(job.data);
    if (!parsed.success) {
      logger.error({ job_id: job.id, issues: parsed.error.issues }, 'unreadable webhook job payload');
      return 'skipped';
    }
    const { event_id: eventId, attempt, manual } = parsed.data;
    const log = logger.child({ webhook_id: eventId, attempt, manual });
    const event = await findWebhookEvent(db, eventId);
    if (!event) return 'skipped';
    // Already recorded (a job retried after a crash past its commit), or no longer wanted.
    if (event.attempts >= attempt || (!manual && event.status !== 'pending')) {
      log.info({ status: event.status, attempts: event.attempts }, 'webhook attempt skipped');
      return 'skipped';
    }
    // Checked again here, not only when the event was written: the 410 may have come since.
    const disabled = await findDisabledWebhookUrl(db, event.api_key_id, event.url);
    if (disabled) {
      const skipped = await db
        .transaction()
        .execute((trx) =>
          recordSkippedAttempt(trx, event, attempt, disabled, manual ? undefined : 'disabled'),
        );
      const fields = {
        type: event.type,
        generation_id: event.generation_id,
        outcome: 'skipped_disabled' as const,
        disabled_url_id: disabled.id,
        error: disabledUrlReason(disabled),
      };
      if (!skipped) log.warn(fields, 'webhook attempt already recorded by another sender');
      else log.info(fields, WEBHOOK_SKIPPED_DISABLED);
      return 'skipped_disabled';
    }
    const secrets = await getWebhookSecrets(db, event.api_key_id);
    if (!secrets) return 'skipped';
    const generation = generationFromSnapshot(event.snapshot);
    const data = await toResource(generation, deps.store, deps.resultUrlTtlSeconds, null);
    const body = JSON.stringify({ type: event.type, timestamp: event.created_at.toISOString(), data });
    const timestamp = Math.floor(Date.now() / 1000);
    const signing = secrets.previous ? [secrets.current, secrets.previous] : [secrets.current];
    const result = await postWebhook({
      url: event.url,
      headers: webhookHeaders(signing, event.id, timestamp, body),
      body,
      timeoutMs: deps.timeoutMs,
      policy: deps.policy,
    });

    let status: WebhookEventStatus | undefined;
    let nextAt: Date | null = null;
    if (result.kind === 'delivered') status = 'delivered';
    else if (result.kind === 'gone') status = 'disabled';
    else if (result.kind === 'retry' && !manual) {
      const delay = nextDelaySeconds(deps.retrySchedule, attempt + 1, result.retryAfterSeconds, jitter);
      if (delay === undefined) status = 'failed';
      else nextAt = new Date(Date.now() + delay * 1000);
    } else if (!manual) status = 'failed';
    const outcome = attemptOutcome(result, nextAt);
    deps.onAttempt?.({ kind: outcome, latencyMs: result.latencyMs });

    const recorded = await db.transaction().execute(async (trx) => {
      const done = await recordWebhookAttempt(trx, {
        event,
        attempt,
        url: event.url,
        statusCode: result.statusCode,
        latencyMs: result.latencyMs,
        error: result.error,
        responseBody: result.body,
        status,
        nextAttemptAt: nextAt,
        outcome,
      });
      if (!done) return { recorded: false };
      const disabled =
        result.kind === 'gone'
          ? await disableWebhookUrl(trx, event.api_key_id, event.url, event.id)
          : undefined;
      if (nextAt) await sendWebhookJob(boss, trx, { v: 1, event_id: event.id, attempt: attempt + 1 }, nextAt);
      return { recorded: true, disabled };
    });
    const fields = {
      type: event.type,
      generation_id: event.generation_id,
      outcome,
      status_code: result.statusCode,
      latency_ms: Math.round(result.latencyMs),
      error: result.error,
      next_attempt_at: nextAt?.toISOString() ?? null,
    };
    if (!recorded.recorded) log.warn(fields, 'webhook attempt already recorded by another sender');
    else if (result.kind === 'delivered') log.info(fields, WEBHOOK_DELIVERED);
    else log.warn(fields, WEBHOOK_ATTEMPT_FAILED);
    if (recorded.disabled) {
      log.warn(
        {
          generation_id: event.generation_id,
          url: event.url,
          disabled_url_id: recorded.disabled.disabled.id,
          skipped_events: recorded.disabled.skipped,
        },
        WEBHOOK_URL_DISABLED,
      );
    }
    return outcome;
  }

  /**
   * Queues pending events that have no job (recorded without a queue, or whose job failed for
   * good). One sender at a time does this, under an advisory lock.
   */
  async function recover(graceSeconds: number): Promise<number> {
    return db.transaction().execute(async (trx) => {
      const { rows } = await sql<{ locked: boolean }>`
        select pg_try_advisory_xact_lock(hashtext('easel_webhook_recovery')) as locked`.execute(trx);
      if (!rows[0]?.locked) return 0;
      const orphans = await findOrphanedWebhookEvents(trx, graceSeconds);
      for (const orphan of orphans) {
        await sendWebhookJob(boss, trx, { v: 1, event_id: orphan.id, attempt: orphan.attempts + 1 });
      }
      if (orphans.length > 0)
        logger.warn({ events: orphans.map((o) => o.id) }, 'requeued orphaned webhook events');
      return orphans.length;
    });
  }

  return { handle, recover };
}
