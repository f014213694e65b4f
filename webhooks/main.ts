// The webhook sender process: works the `webhooks` queue, several deliveries at once. Only ever
// executed (`node webhooks/main.ts`), never imported. Any number may run side by side.
import type { Server } from 'node:http';
import { sql } from 'kysely';
import { pino } from 'pino';
import { createDb } from '../db/connect.ts';
import { migrateToLatest } from '../db/migrate.ts';
import { createBoss } from '../db/queue.ts';
import { ensureWebhookQueue, WEBHOOK_QUEUE } from '../db/webhook-queue.ts';
import { ConfigError } from '../shared/env.ts';
import { closeMetricsServer, metricsServerUrl, startMetricsServer } from '../shared/health-server.ts';
import { createS3ObjectStore } from '../shared/object-store.ts';
import { loadSenderConfig, type SenderConfig, senderS3Settings } from './config.ts';
import { createSenderMetrics } from './metrics.ts';
import { policyFrom } from './policy.ts';
import { createWebhookSender } from './sender.ts';

let config: SenderConfig;
try {
  config = loadSenderConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`easel webhook sender: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
}

const logger = pino({ level: config.LOG_LEVEL, name: 'easel-webhook-sender' });
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
let metricsServer: Server | undefined;
if (config.METRICS_PORT !== undefined) {
  try {
    // Up before the queue, so a sender stuck starting shows as not ready rather than as nothing.
    metricsServer = await startMetricsServer({
      registry: metrics.registry,
      port: config.METRICS_PORT,
      host: config.METRICS_HOST,
      readiness: async () => {
        if (!working) return { ok: false, reason: 'starting' };
        await sql`select 1`.execute(db);
        return { ok: true, database: 'ok' };
      },
    });
  } catch (error) {
    logger.fatal({ err: error, port: config.METRICS_PORT }, 'webhook sender metrics listener failed');
    await db.destroy();
    process.exit(1);
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
} catch (error) {
  logger.fatal({ err: error }, 'webhook sender failed to start');
  await Promise.allSettled([boss.stop({ graceful: false }), db.destroy()]);
  process.exit(1);
}

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
working = true;

const recovery = setInterval(() => {
  sender
    .recover(config.WEBHOOK_RECOVERY_SECONDS)
    .catch((error) => logger.warn({ err: error }, 'recovery failed'));
}, config.WEBHOOK_RECOVERY_SECONDS * 1000);
recovery.unref();

logger.info(
  {
    concurrency: config.WEBHOOK_CONCURRENCY,
    schedule: config.retrySchedule,
    timeout_s: config.WEBHOOK_TIMEOUT_SECONDS,
    metrics_url: metricsServer ? metricsServerUrl(metricsServer) : null,
  },
  'webhook sender ready',
);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'webhook sender stopping');
  clearInterval(recovery);
  working = false;
  try {
    // Attempts in progress finish (each is bounded by the timeout) and are recorded.
    await boss.offWork(WEBHOOK_QUEUE, { wait: true });
    await boss.stop({ graceful: true, timeout: 5_000 });
    await db.destroy();
    store.close();
    if (metricsServer) await closeMetricsServer(metricsServer);
    logger.info('webhook sender stopped');
    process.exit(0);
  } catch (error) {
    logger.error({ err: error }, 'webhook sender shutdown failed');
    process.exit(1);
  }
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
