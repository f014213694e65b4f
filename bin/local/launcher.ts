// `easel start`: the whole service on one machine with no configuration. Anything the
// environment already points at (DATABASE_URL, S3_ENDPOINT, MODEL_DIR) is used as is; the
// rest is provided locally: embedded Postgres, an in-process S3 server, the demo model.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ensureApiKey, generateApiKey } from '../../db/api-keys.repository.ts';
import { createDb } from '../../db/connect.ts';
import { migrateToLatest } from '../../db/migrate.ts';
import { startLocalPostgres } from './embedded-postgres.ts';
import { startLocalS3Server } from './s3-server.ts';
import { type ServiceProcess, startService } from './service-process.ts';

function say(line: string) {
  process.stderr.write(`${line}\n`);
}

/** The local key: EASEL_API_KEY, else one generated on first start and kept in the data folder. */
function localApiKey(dataDir: string): string {
  if (process.env.EASEL_API_KEY) return process.env.EASEL_API_KEY;
  const file = join(dataDir, 'api-key');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const key = generateApiKey();
  writeFileSync(file, `${key}\n`, { mode: 0o600 });
  return key;
}

export async function runLocal(): Promise<void> {
  const dataDir = resolve(process.env.EASEL_DATA_DIR ?? '.easel');
  mkdirSync(dataDir, { recursive: true });
  const cleanups: (() => Promise<unknown>)[] = [];
  const services: ServiceProcess[] = [];

  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('\nstopping…');
    // Reverse order: services first (the worker finishes its job), then storage and database.
    await Promise.allSettled(services.map((s) => s.stop('SIGTERM')));
    for (const cleanup of cleanups.reverse()) await cleanup().catch((e) => say(String(e)));
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  try {
    let databaseUrl = process.env.DATABASE_URL;
    if (!databaseUrl) {
      say(`starting embedded PostgreSQL in ${join(dataDir, 'postgres')} …`);
      const pg = await startLocalPostgres(dataDir, say);
      cleanups.push(() => pg.stop());
      databaseUrl = pg.url;
    }
    let s3Endpoint = process.env.S3_ENDPOINT;
    if (!s3Endpoint) {
      const s3 = await startLocalS3Server({ storageDir: join(dataDir, 's3') });
      cleanups.push(() => s3.stop());
      s3Endpoint = s3.endpoint;
    }

    const db = createDb(databaseUrl, { max: 2 });
    await migrateToLatest(db);
    const apiKey = localApiKey(dataDir);
    await ensureApiKey(db, { name: 'local', key: apiKey });
    await db.destroy();

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: databaseUrl,
      S3_ENDPOINT: s3Endpoint,
      EASEL_DATA_DIR: dataDir,
      PORT: process.env.PORT ?? '8080',
    };
    const forward = (prefix: string) => (line: string) => process.stdout.write(`${prefix} ${line}\n`);
    say('loading models and starting the worker …');
    const [api] = await Promise.all([
      startService({
        name: 'api',
        script: 'api/main.ts',
        env,
        readyMsg: 'api listening',
        onLine: forward('[api]'),
      }).then((s) => {
        services.push(s);
        return s;
      }),
      startService({
        name: 'worker',
        script: 'gpu-worker/main.ts',
        env,
        readyMsg: 'worker ready',
        onLine: forward('[worker]'),
      }).then((s) => {
        services.push(s);
        return s;
      }),
      startService({
        name: 'webhook-sender',
        script: 'api/webhook-sender.main.ts',
        env,
        readyMsg: 'webhook sender ready',
        onLine: forward('[webhooks]'),
      }).then((s) => {
        services.push(s);
        return s;
      }),
    ]);
    for (const service of services) {
      service.child.on('exit', (code) => {
        if (!stopping) {
          say(`${service.name} exited unexpectedly (code ${code})`);
          void stopAll(1);
        }
      });
    }
    const url = String(api.ready.url).replace('127.0.0.1', 'localhost');
    say(`
Easel is running at ${url}  (API docs: ${url}/docs)
API key: ${apiKey}
Model: ${process.env.MODEL_DIR ?? 'demo model (random weights: images are noise)'}

Try:
  curl -s -X POST ${url}/v1/generations \\
    -H "Authorization: Bearer ${apiKey}" -H "Content-Type: application/json" \\
    -d '{"prompt": "a lighthouse at dusk, oil painting", "width": 512, "height": 512, "steps": 20}'
  curl -s ${url}/v1/generations/<id> -H "Authorization: Bearer ${apiKey}"

Ctrl-C stops everything.
`);
  } catch (error) {
    say(`easel start failed: ${error instanceof Error ? error.message : String(error)}`);
    await stopAll(1);
  }
}
