// The GPU worker process: one per accelerator. Loads and warms the models once, then takes
// generation jobs one at a time until SIGTERM.
import { hostname } from 'node:os';
import { sql } from 'kysely';
import pino from 'pino';
import { createDb } from '../db/connect.ts';
import { createListenConnection } from '../db/listen-connection.ts';
import { migrateToLatest } from '../db/migrate.ts';
import {
  createBoss,
  createQueueWaker,
  ensureGenerationQueue,
  GENERATION_QUEUED_CHANNEL,
} from '../db/queue.ts';
import { ensureWebhookQueue } from '../db/webhook-queue.ts';
import { heartbeatWorker, markWorkerStopped, registerWorker } from '../db/workers.repository.ts';
import { withDeadline } from '../shared/deadline.ts';
import { ConfigError, s3SettingsFrom } from '../shared/env.ts';
import { closeMetricsServer, metricsServerUrl, startMetricsServer } from '../shared/health-server.ts';
import { createS3ObjectStore } from '../shared/object-store.ts';
import { createCancelListener } from './cancel-listener.ts';
import { loadWorkerConfig, type WorkerConfig } from './config.ts';
import { createGenerationStages } from './generation.handler.ts';
import { createWorkerMetrics } from './metrics.ts';
import { type QueueLoop, startQueueLoop } from './queue-loop.ts';
import { startQueueReconciler } from './queue-reconciler.ts';
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
const reconciler = startQueueReconciler({
  db,
  boss,
  logger: logger.child({ component: 'queue-reconciler' }),
  waker: createQueueWaker(db, (error) => logger.warn({ err: error }, 'queue wake-up failed')),
  intervalMs: env.QUEUE_MONITOR_SECONDS * 1000,
});

const READINESS_TIMEOUT_MS = 1000;
const shutdown = new AbortController();
let models: WarmModels | undefined;
let activeGeneration: string | undefined;
let ready = false;
let stopping = false;

const metrics = createWorkerMetrics({ heldJobs: () => loop?.held ?? 0, ready: () => ready });

/** Each dependency must answer within the deadline; 'ok' or why not. */
async function check(probe: () => Promise<unknown>): Promise<string> {
  try {
    await withDeadline(probe(), READINESS_TIMEOUT_MS, 'check');
    return 'ok';
  } catch (error) {
    return error instanceof Error ? error.message || error.name : String(error);
  }
}

// /readyz: models loaded and warmed (the queue loop runs), Postgres and the object store answer;
// /metrics for Prometheus; /healthz only says the process answers.
const health =
  env.HEALTH_PORT === undefined
    ? undefined
    : await startMetricsServer({
        registry: metrics.registry,
        port: env.HEALTH_PORT,
        host: env.HEALTH_HOST,
        readinessTimeoutMs: READINESS_TIMEOUT_MS * 2,
        async readiness() {
          const [database, objectStore] = await Promise.all([
            check(() => sql`select 1`.execute(db)),
            check(() => store.ping()),
          ]);
          return {
            ok: ready && database === 'ok' && objectStore === 'ok',
            checks: { models: ready ? 'ok' : 'loading', database, object_store: objectStore },
            worker_id: env.WORKER_ID,
            provider: env.EXECUTION_PROVIDER,
            model: models?.model.info ?? null,
            translator: models?.translator?.info ?? null,
            current_generation: activeGeneration ?? null,
            jobs_in_hand: loop?.held ?? 0,
          };
        },
      });
if (health) logger.info({ url: metricsServerUrl(health) }, 'worker health listening');

try {
  [models] = await Promise.all([
    loadWarmModels(config, logger),
    (async () => {
      await migrateToLatest(db);
      await store.ensureBucket();
      await boss.start();
      await ensureGenerationQueue(boss, config.queuePolicy);
      // Hand back jobs of workers that died (SIGKILL, lost box) now, not at pg-boss's next
      // supervision tick: a restarted worker must find its predecessor's job queued again.
      await boss.supervise();
      // …and record the generations whose every attempt died with its worker.
      await reconciler.runNow();
      await ensureWebhookQueue(boss);
      await cancels.start();
      await wakeups.start();
    })(),
  ]);
} catch (error) {
  // A worker that cannot load its models or reach its dependencies must not take jobs.
  logger.fatal({ err: error }, 'worker failed to start');
  await reconciler.stop();
  await Promise.allSettled([boss.stop({ graceful: false }), cancels.close(), wakeups.close(), db.destroy()]);
  if (health) await closeMetricsServer(health).catch(() => {});
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
  pollIntervalMs: env.QUEUE_POLL_SECONDS * 1000,
  prefetchLeadMs: env.PREFETCH_LEAD_MS,
  maxTails: env.MAX_PENDING_UPLOADS,
  observer: {
    settled(settlement) {
      if (settlement.outcome === 'succeeded') counts.succeeded++;
      else if (settlement.outcome === 'failed') counts.failed++;
      metrics.settled(settlement);
    },
    acceleratorBusy: (_id, start, end) => metrics.acceleratorBusy(end - start),
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
// The loop only ends on stop(); if it ever ends otherwise, a restart beats a worker that idles.
void loop.done.then(() => {
  if (stopping) return;
  logger.fatal('queue loop ended unexpectedly; exiting so the supervisor restarts the worker');
  process.exit(1);
});

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
  await reconciler.stop();
  await markWorkerStopped(db, env.WORKER_ID).catch(() => {});
  await boss.stop({ graceful: true, timeout: 5_000 });
  await Promise.all([cancels.close(), wakeups.close()]);
  await models?.release();
  await db.destroy();
  store.close();
  if (health) await closeMetricsServer(health).catch(() => {});
  logger.info('worker stopped');
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
