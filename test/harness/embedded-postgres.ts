// A PostgreSQL server of the test's own (the one `easel start` runs, bin/local/embedded-postgres.ts),
// in a temporary folder, that a fault test may stop and start again. Never the machine's shared
// server on 5432: other test files and agents use that one.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLocalPostgres } from '../../bin/local/embedded-postgres.ts';

export interface RestartablePostgres {
  /** The maintenance database, for createTestDatabase(label, adminUrl). */
  adminUrl: string;
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
  // Room for the API, worker and test pools of a stack at once.
  const server = await startLocalPostgres(folder, () => {}, { postgresFlags: ['-c', 'max_connections=200'] });
  let running = true;
  return {
    adminUrl: server.url,
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
