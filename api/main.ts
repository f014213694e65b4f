// The API process. Only ever executed (`node api/main.ts`), never imported.
import { serve } from '@hono/node-server';
import { pino } from 'pino';
import { createDb } from '../db/connect.ts';
import { migrateToLatest } from '../db/migrate.ts';
import { createBoss, ensureGenerationQueue } from '../db/queue.ts';
import { ensureWebhookQueue } from '../db/webhook-queue.ts';
import { ConfigError } from '../shared/env.ts';
import { answerClientErrors, MAX_HEADER_BYTES } from '../shared/http-client-errors.ts';
import { createS3ObjectStore, type ObjectStore } from '../shared/object-store.ts';
import { createApp } from './app.ts';
import { type ApiConfig, internalS3Settings, loadApiConfig, publicS3Settings } from './config.ts';
import { createStatusListener } from './status-listener.ts';

let config: ApiConfig;
try {
  config = loadApiConfig();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`easel api: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
}

const logger = pino({ level: config.LOG_LEVEL, name: 'easel-api' });

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

const db = createDb(config.DATABASE_URL, { applicationName: 'easel-api', connectionTimeoutMillis: 3_000 });
const boss = createBoss(config.DATABASE_URL, { supervise: false, applicationName: 'easel-api' });
const store = objectStoreFor(config);
// Not fatal when it cannot connect: it keeps retrying, and `Prefer: wait` just times out meanwhile.
const statusListener = createStatusListener({ connectionString: config.DATABASE_URL, logger });

try {
  const { applied } = await migrateToLatest(db);
  if (applied.length > 0) logger.info({ applied }, 'migrations applied');
  boss.on('error', (error) => logger.error({ err: error }, 'pg-boss error'));
  await boss.start();
  await ensureGenerationQueue(boss);
  // The cancel of a queued generation enqueues its webhook event in the same transaction.
  await ensureWebhookQueue(boss);
  await statusListener.start();
} catch (error) {
  logger.fatal({ err: error }, 'api failed to start');
  await statusListener.close();
  await db.destroy().catch(() => {});
  process.exit(1);
}

const app = createApp({ db, boss, store, config, logger, statusListener });

const server = serve(
  {
    fetch: app.fetch,
    hostname: config.HOST,
    port: config.PORT,
    serverOptions: { maxHeaderSize: MAX_HEADER_BYTES },
  },
  (info) => {
    const host = config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST;
    logger.info({ url: `http://${host}:${info.port}` }, 'api listening');
  },
);
// What Node's parser refuses (oversized headers, malformed HTTP) is answered as problem+json too.
answerClientErrors(server, {
  onAnswer: ({ status, code }, error) => logger.info({ status, code, reason: error.message }, 'client error'),
});
server.on('error', (error) => {
  logger.fatal({ err: error }, 'api server failed');
  process.exit(1);
});

const SHUTDOWN_GRACE_MS = 10_000;
let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'api stopping');
  // Stop accepting, let in-flight requests finish, then release the pools they used.
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  if ('closeIdleConnections' in server) {
    server.closeIdleConnections();
    // A client holding a request open must not keep the process from stopping.
    setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS).unref();
  }
  try {
    // Requests held by `Prefer: wait` answer now with what they have (202) instead of at their timeout.
    await statusListener.close();
    await closed;
    await boss.stop({ graceful: true });
    await db.destroy();
    store.close();
    logger.info('api stopped');
    process.exit(0);
  } catch (error) {
    logger.error({ err: error }, 'api shutdown failed');
    process.exit(1);
  }
}

process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
