// `easel start`: the whole service on one machine with no configuration. Anything the
// environment already points at (DATABASE_URL, S3_ENDPOINT, MODEL_DIR) is used as is; the
// rest is provided locally: embedded Postgres, an in-process S3 server, the demo model.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ensureApiKey, generateApiKey } from '../../db/api-keys.repository.ts';
import { createDb } from '../../db/connect.ts';
import { migrateToLatest } from '../../db/migrate.ts';
import { startLocalPostgres } from './embedded-postgres.ts';
import { formatLogLine } from './log-format.ts';
import { startLocalS3Server } from './s3-server.ts';
import { type ServiceName, type ServiceProcess, startService } from './service-process.ts';

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

/** Log lines of the services on our stdout: readable on a terminal, the JSON lines as they are otherwise. */
function logForwarder(): (label: string) => (line: string) => void {
  const pretty = process.stdout.isTTY === true;
  const color = pretty && process.stdout.hasColors();
  return (label) => (line) => {
    const out = pretty
      ? formatLogLine(label, line, { color, serviceWidth: 8 })
      : line.startsWith('{')
        ? line
        : `[${label}] ${line}`;
    process.stdout.write(`${out}\n`);
  };
}

export async function runLocal(): Promise<void> {
  const dataDir = resolve(process.env.EASEL_DATA_DIR ?? '.easel');
  mkdirSync(dataDir, { recursive: true });
  const cleanups: (() => Promise<unknown>)[] = [];
  const services: ServiceProcess[] = [];
  // Every service child from the moment it is spawned, so a stop during start-up waits for it too.
  const children: { child: ChildProcess; exited: Promise<unknown> }[] = [];

  // Ctrl-C in a terminal reaches this process and the services (one process group) at once; the
  // database runs in a group of its own, and is stopped here only once every service has exited,
  // so no service sees it go away while it is still finishing its work.
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('\nstopping…');
    await Promise.all(
      children.map(({ child, exited }) => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
        return exited;
      }),
    );
    // Then what they used, in reverse order of starting: the S3 server, then the database.
    for (const cleanup of cleanups.reverse()) await cleanup().catch((e) => say(String(e)));
    say('stopped');
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));
  process.on('SIGHUP', () => void stopAll(0));
  const onSpawn = (child: ChildProcess) => children.push({ child, exited: once(child, 'exit') });

  try {
    let databaseUrl = process.env.DATABASE_URL;
    let databaseNote = '';
    if (!databaseUrl) {
      say('starting embedded PostgreSQL …');
      const pg = await startLocalPostgres(dataDir, say, { ownProcessGroup: true });
      cleanups.push(() => pg.stop());
      if (pg.relocated) {
        say(pg.relocated);
        databaseNote = `; PostgreSQL data in ${pg.databaseDir}`;
      }
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
    const forward = logForwarder();
    say('loading models and starting the worker …');
    // Each service runs as a process of its own, as deployed, in this process group: Ctrl-C
    // reaches them all at once, and one that exits unexpectedly stops the rest (stopAll).
    const start = (name: ServiceName, label: string) =>
      startService({ name, env, onLine: forward(label), onSpawn }).then((s) => {
        services.push(s);
        return s;
      });
    const [api] = await Promise.all([
      start('api', 'api'),
      start('worker', 'worker'),
      start('webhook-sender', 'webhooks'),
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
Data: ${dataDir}${databaseNote}

Try:
  curl -s -X POST ${url}/v1/generations \\
    -H "Authorization: Bearer ${apiKey}" -H "Content-Type: application/json" \\
    -d '{"prompt": "a lighthouse at dusk, oil painting", "width": 512, "height": 512, "steps": 20}'
  curl -s ${url}/v1/generations/<id> -H "Authorization: Bearer ${apiKey}"

Ctrl-C stops everything.
`);
  } catch (error) {
    if (stopping) return; // stopped while starting: the services' own failures are expected
    say(`easel start failed: ${error instanceof Error ? error.message : String(error)}`);
    await stopAll(1);
  }
}
