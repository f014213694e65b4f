// The webhook sender service: startWebhookSender(config) works the `webhooks` queue, several
// deliveries at once, and resolves once it does; stop() lets the attempts in progress finish and
// be recorded. webhooks/main.ts runs it as a process (any number side by side); a test may run
// it in-process. Importing this module does no I/O.
import type { Server } from 'node:http';
import { sql } from 'kysely';
import { pino } from 'pino';
import { createDb } from '../db/connect.ts';
import { migrateToLatest } from '../db/migrate.ts';
import { createBoss } from '../db/queue.ts';
import { ensureWebhookQueue, WEBHOOK_QUEUE } from '../db/webhook-queue.ts';
import { closeHealthServer, healthServerUrl, startHealthServer } from '../shared/health-server.ts';
import {
  DEPRECATED_SETTING,
  WEBHOOK_SENDER_FAILED_TO_START,
  WEBHOOK_SENDER_READY,
  WEBHOOK_SENDER_STOPPED,
  WEBHOOK_SENDER_STOPPING,
} from '../shared/log-events.ts';
import { createS3ObjectStore } from '../shared/object-store.ts';
import { runCheck } from '../shared/readiness.ts';
import { type ServiceDeps, type ServiceHandle, StartFailed, serviceHandle } from '../shared/service.ts';
import { type SenderConfig, senderS3Settings } from './config.ts';
import { createSenderMetrics } from './metrics.ts';
import { policyFrom } from './policy.ts';
import { createWebhookSender } from './sender.ts';

export type WebhookSenderHandle = ServiceHandle<{
  /** The /metrics, /healthz and /readyz listener, when HEALTH_PORT is set. */
  metrics_url: string | null;
}>;

export async function startWebhookSender(
  config: SenderConfig,
  deps: ServiceDeps = {},
): Promise<WebhookSenderHandle> {
  const options = { level: config.LOG_LEVEL, name: 'easel-webhook-sender' };
  const logger = deps.logDestination ? pino(options, deps.logDestination) : pino(options);
  for (const { variable, use } of config.deprecated) logger.warn({ variable, use }, DEPRECATED_SETTING);

  const db = createDb(config.DATABASE_URL, {
    max: config.WEBHOOK_CONCURRENCY + 2,
    applicationName: 'easel-webhook-sender',
  });
  const store = createS3ObjectStore(senderS3Settings(config));
  const boss = createBoss(config.DATABASE_URL, {
    applicationName: 'easel-webhook-sender',
    supervise: true,
    max: 4,
    // A crashed sender's job expires (timeout + 5 s) and is found by the next monitor pass.
    monitorIntervalSeconds: config.WEBHOOK_RECOVERY_SECONDS,
  });
  boss.on('error', (error) => logger.error({ err: error }, 'pg-boss error'));

  const metrics = createSenderMetrics();
  let working = false;
  let health: Server | undefined;
  if (config.HEALTH_PORT !== undefined) {
    try {
      // Up before the queue, so a sender stuck starting shows as not ready rather than as nothing.
      health = await startHealthServer({
        registry: metrics.registry,
        port: config.HEALTH_PORT,
        host: config.HEALTH_HOST,
        readiness: async () => ({
          checks: {
            queue: working ? 'ok' : 'starting',
            database: await runCheck(() => sql`select 1`.execute(db)),
          },
        }),
      });
    } catch (error) {
      logger.fatal({ err: error, port: config.HEALTH_PORT }, 'webhook sender metrics listener failed');
      await db.destroy();
      store.close();
      throw new StartFailed('the webhook sender health listener failed', { cause: error });
    }
  }

  const sender = createWebhookSender({
    db,
    boss,
    store,
    logger,
    policy: policyFrom(config),
    timeoutMs: config.WEBHOOK_TIMEOUT_SECONDS * 1000,
    retrySchedule: config.retrySchedule,
    resultUrlTtlSeconds: config.RESULT_URL_TTL_SECONDS,
    onAttempt: metrics.observeAttempt,
  });

  try {
    await migrateToLatest(db);
    await boss.start();
    await ensureWebhookQueue(boss, config.WEBHOOK_TIMEOUT_SECONDS);
    await boss.work(
      WEBHOOK_QUEUE,
      {
        batchSize: 1,
        localConcurrency: config.WEBHOOK_CONCURRENCY,
        // A retry's startAfter does not NOTIFY: a short poll keeps the schedule within a second.
        pollingIntervalSeconds: 1,
        notifyPollingIntervalSeconds: 1,
      },
      async ([job]) => {
        if (job) await sender.handle(job);
      },
    );
  } catch (error) {
    logger.fatal({ err: error }, WEBHOOK_SENDER_FAILED_TO_START);
    await Promise.allSettled([boss.stop({ graceful: false }), db.destroy()]);
    store.close();
    if (health) await closeHealthServer(health).catch(() => {});
    throw new StartFailed('the webhook sender failed to start', { cause: error });
  }
  working = true;

  const recovery = setInterval(() => {
    sender
      .recover(config.WEBHOOK_RECOVERY_SECONDS)
      .catch((error) => logger.warn({ err: error }, 'recovery failed'));
  }, config.WEBHOOK_RECOVERY_SECONDS * 1000);
  recovery.unref();

  const metricsUrl = health ? healthServerUrl(health) : null;
  logger.info(
    {
      concurrency: config.WEBHOOK_CONCURRENCY,
      schedule: config.retrySchedule,
      timeout_s: config.WEBHOOK_TIMEOUT_SECONDS,
      metrics_url: metricsUrl,
    },
    WEBHOOK_SENDER_READY,
  );

  async function shutdown(signal: NodeJS.Signals | undefined) {
    logger.info({ signal }, WEBHOOK_SENDER_STOPPING);
    clearInterval(recovery);
    working = false;
    try {
      // Attempts in progress finish (each is bounded by the timeout) and are recorded.
      await boss.offWork(WEBHOOK_QUEUE, { wait: true });
      await boss.stop({ graceful: true, timeout: 5_000 });
      await db.destroy();
      store.close();
      if (health) await closeHealthServer(health);
      logger.info(WEBHOOK_SENDER_STOPPED);
    } catch (error) {
      logger.error({ err: error }, 'webhook sender shutdown failed');
      throw error;
    }
  }

  // Nothing fails on its own once it works: pg-boss retries its connections, each delivery
  // failure is recorded on its event.
  const failed = new Promise<void>(() => {});
  return serviceHandle({ metrics_url: metricsUrl }, failed, shutdown);
}
