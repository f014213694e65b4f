import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import type { Database } from './types.ts';

// bigint columns (seed) hold values up to 2^32-1: exact as JS numbers, so parse them as such.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export type Db = Kysely<Database>;

export interface DbOptions {
  max?: number;
  applicationName?: string;
  /** Fail fast instead of queueing forever when Postgres is down. */
  connectionTimeoutMillis?: number;
}

export function createDb(connectionString: string, options: DbOptions = {}): Db {
  const pool = new pg.Pool({
    connectionString,
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'easel',
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 5_000,
  });
  // An idle client losing its connection (Postgres restart) must not crash the process.
  pool.on('error', () => {});
  // A checked-out client that loses its connection between queries emits 'error' on itself, not
  // on the pool; unhandled, that kills the process. The query in flight still rejects, and pg
  // discards the broken client when it is released.
  pool.on('connect', (client) => client.on('error', () => {}));
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}
