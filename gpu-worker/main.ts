// The GPU worker process: one per accelerator. Loads and warms the models once, then takes
// generation jobs one at a time until SIGTERM.
import { hostname } from 'node:os';
import { sql } from 'kysely';
import pino from 'pino';
import { createDb } from '../db/connect.ts';
import { ConfigError, s3SettingsFrom } from '../db/env.ts';
import { createListenConnection } from '../db/listen-connection.ts';
import { migrateToLatest } from '../db/migrate.ts';
import { createS3ObjectStore } from '../db/object-store.ts';
import { createBoss, ensureGenerationQueue, GENERATION_QUEUED_CHANNEL } from '../db/queue.ts';
import { ensureWebhookQueue } from '../db/webhooks/queue.ts';
import { heartbeatWorker, markWorkerStopped, registerWorker } from '../db/workers.repository.ts';
import { createCancelListener } from './cancel-listener.ts';
import { loadWorkerConfig, type WorkerConfig } from './config.ts';
import { createGenerationStages } from './generation.handler.ts';
import { serverUrl, startHealthServer } from './health-server.ts';
import { type QueueLoop, startQueueLoop } from './queue-loop.ts';
import { loadWarmModels, type WarmModels } from './warm-models.ts';

let config: WorkerConfig;
try {
  config = loadWorkerConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    console.error(`easel worker: ${error.message}`);
    process.exit(1);
  }
  throw error;
}
const { env } = config;
const logger = pino({ level: env.LOG_LEVEL, base: { service: 'easel-worker', worker_id: env.WORKER_ID } });

const db = createDb(env.DATABASE_URL, { max: 4, applicationName: 'easel-worker' });
const store = createS3ObjectStore(s3SettingsFrom(env));
const boss = createBoss(env.DATABASE_URL, {
  applicationName: 'easel-worker',
  supervise: true,
  monitorIntervalSeconds: env.QUEUE_MONITOR_SECONDS,
});
boss.on('error', (error) => logger.error({ err: error }, 'pg-boss error'));
// Not fatal when it cannot connect: it keeps retrying, and the row checks (claim, progress
// writes) still see cancels meanwhile.
const cancels = createCancelListener({ connectionString: env.DATABASE_URL, db, logger });
// Wakes the queue loop when a generation is enqueued; after a reconnect it fetches once in case a
// wake-up was missed (the loop's backstop poll would find it a little later anyway).
let loop: QueueLoop | undefined;
const wakeups = createListenConnection({
  connectionString: env.DATABASE_URL,
  channels: [GENERATION_QUEUED_CHANNEL],
  onNotification: () => loop?.wake(),
  logger: logger.child({ component: 'queue-wakeups' }),
  applicationName: 'easel-worker-wakeups',
});
wakeups.events.on('connected', () => loop?.wake());

const shutdown = new AbortController();
let models: WarmModels | undefined;
let activeGeneration: string | undefined;
let ready = false;

const health =
  env.HEALTH_PORT === undefined
    ? undefined
    : await startHealthServer(
        {
          get ready() {
            return ready;
          },
          async details() {
            let database = true;
            try {
              await sql`select 1`.execute(db);
            } catch {
              database = false;
            }
            return {
              ok: database,
              database,
              worker_id: env.WORKER_ID,
              provider: env.EXECUTION_PROVIDER,
              model: models?.model.info,
              translator: models?.translator?.info ?? null,
              current_generation: activeGeneration ?? null,
            };
          },
        },
        env.HEALTH_PORT,
        env.HEALTH_HOST,
      );
if (health) logger.info({ url: serverUrl(health, env.HEALTH_HOST) }, 'worker health listening');

try {
  [models] = await Promise.all([
    loadWarmModels(config, logger),
    (async () => {
      await migrateToLatest(db);
      await store.ensureBucket();
      await boss.start();
      await ensureGenerationQueue(boss, config.queuePolicy);
      await ensureWebhookQueue(boss);
      await cancels.start();
      await wakeups.start();
    })(),
  ]);
} catch (error) {
  // A worker that cannot load its models or reach its dependencies must not take jobs.
  logger.fatal({ err: error }, 'worker failed to start');
  await Promise.allSettled([boss.stop({ graceful: false }), cancels.close(), wakeups.close(), db.destroy()]);
  health?.close();
  process.exit(1);
}

const stages = createGenerationStages({
  db,
  store,
  model: models.model,
  translator: models.translator,
  translationMode: env.TRANSLATION_MODE,
  logger,
  shutdownSignal: shutdown.signal,
  onActive: (id) => {
    activeGeneration = id;
  },
  cancels,
  workerId: env.WORKER_ID,
  boss,
});
const counts = { succeeded: 0, failed: 0 };
loop = startQueueLoop({
  boss,
  stages,
  logger,
  heartbeatSeconds: env.HEARTBEAT_SECONDS,
  prefetchLeadMs: env.PREFETCH_LEAD_MS,
  maxTails: env.MAX_PENDING_UPLOADS,
  observer: {
    settled(outcome) {
      if (outcome === 'succeeded') counts.succeeded++;
      else if (outcome === 'failed') counts.failed++;
    },
  },
});
const registration = {
  id: env.WORKER_ID,
  hostname: hostname(),
  pid: process.pid,
  provider: env.EXECUTION_PROVIDER,
  model: { ...models.model.info },
  translator: models.translator ? { ...models.translator.info } : null,
};
await registerWorker(db, registration).catch((error: unknown) =>
  logger.warn({ err: error }, 'worker registration failed; the heartbeat retries'),
);
// The registry row (GET /v1/workers) says what this worker runs now and that it is alive.
const registryBeat = setInterval(() => {
  const beat = {
    currentGenerationId: activeGeneration ?? null,
    jobsSucceeded: counts.succeeded,
    jobsFailed: counts.failed,
  };
  heartbeatWorker(db, env.WORKER_ID, beat)
    .catch(() => registerWorker(db, registration))
    .catch((error: unknown) => logger.warn({ err: error }, 'worker registry heartbeat failed'));
}, 5_000);
ready = true;
logger.info({ model: models.model.info, worker_id: env.WORKER_ID }, 'worker ready');

let stopping = false;
async function stop(signal: string) {
  if (stopping) return;
  stopping = true;
  ready = false;
  logger.info(
    { signal, grace_seconds: env.SHUTDOWN_GRACE_SECONDS, active: activeGeneration },
    'worker stopping',
  );
  // Past the grace period the running job is aborted between steps and handed back to the queue.
  const timer = setTimeout(() => shutdown.abort(), env.SHUTDOWN_GRACE_SECONDS * 1000);
  clearInterval(registryBeat);
  try {
    await loop?.stop();
  } finally {
    clearTimeout(timer);
  }
  await markWorkerStopped(db, env.WORKER_ID).catch(() => {});
  await boss.stop({ graceful: true, timeout: 5_000 });
  await Promise.all([cancels.close(), wakeups.close()]);
  await models?.release();
  await db.destroy();
  store.close();
  health?.close();
  logger.info('worker stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
