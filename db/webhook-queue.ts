// The contract between whoever changes a generation's status (producer) and the webhook sender
// (consumer): the queue name and the versioned job payload. One job is one attempt: retries are
// new jobs with `startAfter`, so the schedule is exactly the configured one; pg-boss's own retry
// only covers a sender that crashed or failed unexpectedly (the attempt is then made again).
import { fromKysely, type PgBoss } from 'pg-boss';
import { z } from 'zod';

export const WEBHOOK_QUEUE = 'webhooks';

export const webhookJobV1 = z.object({
  v: z.literal(1),
  event_id: z.string().min(1),
  /** 1-based; a job whose attempt the event has already recorded is a duplicate and is dropped. */
  attempt: z.int().min(1),
  /** A redelivery asked for by a client: one attempt, no retries. */
  manual: z.boolean().default(false),
});
export const webhookJob = z.discriminatedUnion('v', [webhookJobV1]);
export type WebhookJob = z.input<typeof webhookJobV1>;

/** Queue defaults: a crashed sender's job expires and is retried quickly. */
export function webhookQueueOptions(timeoutSeconds = 10) {
  return {
    expireInSeconds: Math.ceil(timeoutSeconds) + 5,
    retryLimit: 10,
    retryDelay: 1,
    retryBackoff: true,
    retryDelayMax: 60,
    deleteAfterSeconds: 86_400,
    notify: true,
  };
}

/** Creates the webhook queue if missing; the sender (with its timeout) (re)applies the policy. */
export async function ensureWebhookQueue(boss: PgBoss, timeoutSeconds?: number) {
  const options = webhookQueueOptions(timeoutSeconds);
  if (!(await boss.getQueue(WEBHOOK_QUEUE))) {
    try {
      await boss.createQueue(WEBHOOK_QUEUE, options);
      return;
    } catch (error) {
      if (!(await boss.getQueue(WEBHOOK_QUEUE))) throw error;
    }
  }
  if (timeoutSeconds !== undefined) await boss.updateQueue(WEBHOOK_QUEUE, options);
}

export async function sendWebhookJob(
  boss: PgBoss,
  trx: Parameters<typeof fromKysely>[0],
  job: WebhookJob,
  startAfter?: Date,
): Promise<void> {
  await boss.send(WEBHOOK_QUEUE, job, { db: fromKysely(trx), ...(startAfter ? { startAfter } : {}) });
}
