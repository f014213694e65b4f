// The GPU worker service: startWorker(config) loads and warms the models once, connects, and
// resolves once it takes generation jobs (one at a time on the accelerator); stop() lets the jobs
// in hand finish within the grace period and releases everything. gpu-worker/main.ts runs it as a
// process (one per accelerator); a test may run it in-process. Importing this module does no I/O.
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { sql } from 'kysely';
import { pino } from 'pino';
import { createDb } from '../db/connect.ts';
import { createListenConnection } from '../db/listen-connection.ts';
import { migrateToLatest } from '../db/migrate.ts';
import { announceModel } from '../db/models.repository.ts';
import {
  createBoss,
  createQueueWaker,
  ensureGenerationQueue,
  GENERATION_QUEUED_CHANNEL,
  generationQueue,
} from '../db/queue.ts';
import { ensureWebhookQueue } from '../db/webhook-queue.ts';
import { heartbeatWorker, markWorkerStopped, registerWorker } from '../db/workers.repository.ts';
import { s3SettingsFrom } from '../shared/env.ts';
import { closeHealthServer, healthServerUrl, startHealthServer } from '../shared/health-server.ts';
import {
  WORKER_FAILED_TO_START,
  WORKER_HEALTH_LISTENING,
  WORKER_READY,
  WORKER_STOPPED,
  WORKER_STOPPING,
} from '../shared/log-events.ts';
import { createS3ObjectStore } from '../shared/object-store.ts';
import { READINESS_CHECK_TIMEOUT_MS, runCheck } from '../shared/readiness.ts';
import { type ServiceDeps, type ServiceHandle, StartFailed, serviceHandle } from '../shared/service.ts';
import { createCancelListener } from './cancel-listener.ts';
import type { WorkerConfig } from './config.ts';
import { createGenerationStages } from './generation.handler.ts';
import { createWorkerMetrics } from './metrics.ts';
import { modelContentHash } from './models/content-hash.ts';
import { type ModelCard, readModelCard } from './models/model-card.ts';
import { type QueueLoop, startQueueLoop } from './queue-loop.ts';
import { startQueueReconciler } from './queue-reconciler.ts';
import { loadWarmModels, resolveModelDir, type WarmModels } from './warm-models.ts';

export type WorkerHandle = ServiceHandle<{
  worker_id: string;
  /** The /healthz, /readyz and /metrics listener, when HEALTH_PORT is set. */
  health_url: string | null;
}>;

export async function startWorker(config: WorkerConfig, deps: ServiceDeps = {}): Promise<WorkerHandle> {
  const { env } = config;
  const options = { level: env.LOG_LEVEL, base: { service: 'easel-worker', worker_id: env.WORKER_ID } };
  const logger = deps.logDestination ? pino(options, deps.logDestination) : pino(options);

  // The model this worker serves decides its queue and what it announces: read before connecting.
  let modelDir: string;
  let card: ModelCard;
  try {
    modelDir = await resolveModelDir(config);
    card = await readModelCard(modelDir, env.MODEL_ID);
  } catch (error) {
    logger.fatal({ err: error }, WORKER_FAILED_TO_START);
    throw new StartFailed('the worker failed to start', { cause: error });
  }
  const queue = generationQueue(card.id);

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
    // The payload names the model whose queue got jobs; '' is for every worker.
    onNotification: (_channel, payload) => {
      if (payload === '' || payload === card.id) loop?.wake();
    },
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
    model: card.id,
  });

  const shutdown = new AbortController();
  let models: WarmModels | undefined;
  let activeGeneration: string | undefined;
  let ready = false;
  let stopping = false;
  let health: Server | undefined;

  const metrics = createWorkerMetrics({ heldJobs: () => loop?.held ?? 0, ready: () => ready });

  const failedToStart = async (error: unknown): Promise<never> => {
    // A worker that cannot load its models or reach its dependencies must not take jobs.
    logger.fatal({ err: error }, WORKER_FAILED_TO_START);
    await reconciler.stop();
    await Promise.allSettled([
      boss.stop({ graceful: false }),
      cancels.close(),
      wakeups.close(),
      db.destroy(),
    ]);
    store.close();
    if (health) await closeHealthServer(health).catch(() => {});
    throw new StartFailed('the worker failed to start', { cause: error });
  };

  // /readyz: models loaded and warmed (the queue loop runs), Postgres and the object store answer;
  // /metrics for Prometheus; /healthz only says the process answers.
  if (env.HEALTH_PORT !== undefined) {
    health = await startHealthServer({
      registry: metrics.registry,
      port: env.HEALTH_PORT,
      host: env.HEALTH_HOST,
      readinessTimeoutMs: READINESS_CHECK_TIMEOUT_MS * 2,
      async readiness() {
        const [database, objectStore] = await Promise.all([
          runCheck(() => sql`select 1`.execute(db)),
          runCheck(() => store.ping()),
        ]);
        return {
          checks: { models: ready ? 'ok' : 'loading', database, object_store: objectStore },
          details: {
            worker_id: env.WORKER_ID,
            provider: env.EXECUTION_PROVIDER,
            model: models?.model.info ?? null,
            translator: models?.translator?.info ?? null,
            current_generation: activeGeneration ?? null,
            jobs_in_hand: loop?.held ?? 0,
          },
        };
      },
    }).catch(failedToStart);
    logger.info({ url: healthServerUrl(health) }, WORKER_HEALTH_LISTENING);
  }

  // Tells the fleet (and the API) what this worker serves, before it takes jobs.
  const announce = async (contentHash: string) => {
    const announced = await announceModel(db, {
      id: card.id,
      family: card.family.name,
      capabilities: card.capabilities,
      contentHash,
    });
    if (announced.previousHash && announced.previousHash !== contentHash) {
      logger.warn(
        { model_id: card.id, previous_hash: announced.previousHash, content_hash: contentHash },
        "this model's files differ from what it was last announced with",
      );
    }
    if (announced.retired)
      logger.warn({ model_id: card.id }, 'this model is retired: it takes no new generations');
  };
  const loading = loadWarmModels(config, modelDir, logger);
  // Hashing the folder runs beside the load (the model's files are read once either way).
  const hashing = modelContentHash(modelDir, `${env.EASEL_DATA_DIR}/model-hashes.json`);
  hashing.catch(() => {});
  try {
    [models] = await Promise.all([
      loading,
      (async () => {
        await migrateToLatest(db);
        await announce(await hashing);
        await store.ensureBucket();
        await boss.start();
        await ensureGenerationQueue(boss, card.id, config.queuePolicy);
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
    // Models that loaded (or are still loading) while something else failed are released too.
    loading.then((loaded) => loaded.release()).catch(() => {});
    return failedToStart(error);
  }
  const warm = models;

  const stages = createGenerationStages({
    db,
    store,
    model: warm.model,
    translator: warm.translator,
    translationMode: env.TRANSLATION_MODE,
    languages: card.capabilities.languages,
    logger,
    shutdownSignal: shutdown.signal,
    onActive: (id) => {
      activeGeneration = id;
    },
    cancels,
    workerId: env.WORKER_ID,
    boss,
    // A row from before models existed ran on this worker's model (the default queue's).
    onAcceleratorUsage: (model, us) => metrics.acceleratorUsage(model ?? card.id, us),
  });
  const counts = { succeeded: 0, failed: 0 };
  const running = startQueueLoop({
    boss,
    queue,
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
  loop = running;
  const registration = {
    id: env.WORKER_ID,
    hostname: hostname(),
    pid: process.pid,
    provider: env.EXECUTION_PROVIDER,
    model: { ...warm.model.info, id: card.id },
    modelId: card.id,
    translator: warm.translator ? { ...warm.translator.info } : null,
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
  logger.info({ model: warm.model.info, worker_id: env.WORKER_ID }, WORKER_READY);
  // The loop only ends on stop(); if it ever ends otherwise, a restart beats a worker that idles.
  const failed = running.done.then(() => {
    if (stopping) return new Promise<void>(() => {});
    logger.fatal('queue loop ended unexpectedly; exiting so the supervisor restarts the worker');
  });

  async function stop(signal: NodeJS.Signals | undefined) {
    stopping = true;
    ready = false;
    logger.info(
      { signal, grace_seconds: env.SHUTDOWN_GRACE_SECONDS, active: activeGeneration },
      WORKER_STOPPING,
    );
    // Past the grace period the running job is aborted between steps and handed back to the queue.
    const timer = setTimeout(() => shutdown.abort(), env.SHUTDOWN_GRACE_SECONDS * 1000);
    clearInterval(registryBeat);
    try {
      try {
        await running.stop();
      } finally {
        clearTimeout(timer);
      }
      await reconciler.stop();
      await markWorkerStopped(db, env.WORKER_ID).catch(() => {});
      await boss.stop({ graceful: true, timeout: 5_000 });
      await Promise.all([cancels.close(), wakeups.close()]);
      await warm.release();
      await db.destroy();
      store.close();
      if (health) await closeHealthServer(health).catch(() => {});
      logger.info(WORKER_STOPPED);
    } catch (error) {
      logger.error({ err: error }, 'worker shutdown failed');
      throw error;
    }
  }

  const healthUrl = health ? healthServerUrl(health) : null;
  return serviceHandle({ worker_id: env.WORKER_ID, health_url: healthUrl }, failed, stop);
}
