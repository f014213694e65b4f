// The API service: startApi(config) connects, migrates, listens and resolves once it serves;
// stop() lets requests in flight finish and releases what it opened. api/main.ts runs it as a
// process; a test may run it in-process. Importing this module does no I/O.
import { serve } from '@hono/node-server';
import { pino } from 'pino';
import { createDb } from '../db/connect.ts';
import { migrateToLatest } from '../db/migrate.ts';
import { createBoss, ensureGenerationQueue } from '../db/queue.ts';
import { ensureWebhookQueue } from '../db/webhook-queue.ts';
import { answerClientErrors, MAX_HEADER_BYTES } from '../shared/http-client-errors.ts';
import { API_FAILED_TO_START, API_LISTENING, API_STOPPED, API_STOPPING } from '../shared/log-events.ts';
import { createS3ObjectStore, type ObjectStore } from '../shared/object-store.ts';
import { type ServiceDeps, type ServiceHandle, StartFailed, serviceHandle } from '../shared/service.ts';
import { createApp } from './app.ts';
import { type ApiConfig, internalS3Settings, publicS3Settings } from './config.ts';
import { createEventHub } from './event-hub.ts';
import { startLegacyAdoption } from './legacy-adoption.ts';
import { createModelCatalog } from './model-catalog.ts';
import { createStatusListener } from './status-listener.ts';

export type ApiHandle = ServiceHandle<{ url: string }>;

/** How long stop() lets a client hold a request open before its connection is cut. */
const SHUTDOWN_GRACE_MS = 10_000;

/**
 * Pings go to the endpoint the API itself reaches; URLs are signed for the one clients reach
 * (they differ in docker compose: minio:9000 inside, localhost:9000 outside).
 */
function objectStoreFor(cfg: ApiConfig): ObjectStore {
  const internal = createS3ObjectStore(internalS3Settings(cfg));
  if (!cfg.S3_PUBLIC_ENDPOINT || cfg.S3_PUBLIC_ENDPOINT === cfg.S3_ENDPOINT) return internal;
  const published = createS3ObjectStore(publicS3Settings(cfg));
  return {
    bucket: internal.bucket,
    put: internal.put,
    ensureBucket: internal.ensureBucket,
    ping: internal.ping,
    presignGet: published.presignGet,
    close() {
      internal.close();
      published.close();
    },
  };
}

export async function startApi(config: ApiConfig, deps: ServiceDeps = {}): Promise<ApiHandle> {
  const options = { level: config.LOG_LEVEL, name: 'easel-api' };
  const logger = deps.logDestination ? pino(options, deps.logDestination) : pino(options);

  const db = createDb(config.DATABASE_URL, { applicationName: 'easel-api', connectionTimeoutMillis: 3_000 });
  const boss = createBoss(config.DATABASE_URL, { supervise: false, applicationName: 'easel-api' });
  const store = objectStoreFor(config);
  // Not fatal when it cannot connect: it keeps retrying, and `Prefer: wait` just times out meanwhile.
  const statusListener = createStatusListener({ connectionString: config.DATABASE_URL, logger });
  const release = async () => {
    await Promise.allSettled([boss.stop({ graceful: false }), statusListener.close()]);
    await db.destroy().catch(() => {});
    store.close();
  };

  try {
    const { applied } = await migrateToLatest(db);
    if (applied.length > 0) logger.info({ applied }, 'migrations applied');
    boss.on('error', (error) => logger.error({ err: error }, 'pg-boss error'));
    await boss.start();
    // The queue of generations from before models existed, so they can still be canceled; each
    // model's queue is made when its worker starts, or at the first create for it.
    await ensureGenerationQueue(boss, null);
    // The cancel of a queued generation enqueues its webhook event in the same transaction.
    await ensureWebhookQueue(boss);
    await statusListener.start();
  } catch (error) {
    logger.fatal({ err: error }, API_FAILED_TO_START);
    await release();
    throw new StartFailed('the API failed to start', { cause: error });
  }

  const models = createModelCatalog({
    db,
    boss,
    cacheMs: config.MODEL_CACHE_SECONDS * 1000,
    defaultModel: config.DEFAULT_MODEL,
  });
  // The event streams hear the status listener's notifications: one LISTEN connection per process.
  const eventHub = createEventHub({ db, store, config, logger, notifications: statusListener });
  const app = createApp({ db, boss, store, config, logger, statusListener, models, eventHub });
  const legacy = startLegacyAdoption({ db, boss, models, logger });
  let listening = false;
  let reportFailure: () => void = () => {};
  const failed = new Promise<void>((resolve) => {
    reportFailure = resolve;
  });
  const { server, port } = await new Promise<{ server: ReturnType<typeof serve>; port: number }>(
    (resolve, reject) => {
      const server = serve(
        {
          fetch: app.fetch,
          hostname: config.HOST,
          port: config.PORT,
          serverOptions: { maxHeaderSize: MAX_HEADER_BYTES },
        },
        (info) => resolve({ server, port: info.port }),
      );
      // What Node's parser refuses (oversized headers, malformed HTTP) is answered as problem+json too.
      answerClientErrors(server, {
        onAnswer: ({ status, code }, error) =>
          logger.info({ status, code, reason: error.message }, 'client error'),
      });
      server.on('error', (error) => {
        logger.fatal({ err: error }, 'api server failed');
        if (listening) reportFailure();
        else reject(error);
      });
    },
  ).catch(async (error: unknown) => {
    await release();
    throw new StartFailed('the API server failed', { cause: error });
  });
  listening = true;
  const host = config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST;
  const url = `http://${host}:${port}`;
  logger.info({ url }, API_LISTENING);

  async function shutdown(signal: NodeJS.Signals | undefined) {
    logger.info({ signal }, API_STOPPING);
    // Stop accepting, let in-flight requests finish, then release the pools they used.
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    let cutOff: NodeJS.Timeout | undefined;
    if ('closeIdleConnections' in server) {
      server.closeIdleConnections();
      // A client holding a request open must not keep the process from stopping.
      cutOff = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS).unref();
    }
    try {
      // Event streams end now (their connections with them), so the server can close.
      await eventHub.close();
      // Requests held by `Prefer: wait` answer now with what they have (202) instead of at their timeout.
      await statusListener.close();
      await legacy.stop();
      await closed;
      await boss.stop({ graceful: true });
      await db.destroy();
      store.close();
      logger.info(API_STOPPED);
    } catch (error) {
      logger.error({ err: error }, 'api shutdown failed');
      throw error;
    } finally {
      clearTimeout(cutOff);
    }
  }

  return serviceHandle({ url }, failed, shutdown);
}
