// Each test file gets its own database on the local Postgres server, created fresh and dropped
// at the end, so files can run in any order (or in parallel) without seeing each other's rows.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createDb, type Db } from '../../db/connect.ts';
import { migrateToLatest } from '../../db/migrate.ts';

export const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  url: string;
  name: string;
  /** A Kysely handle on the migrated database. */
  db: Db;
  drop(): Promise<void>;
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>, adminUrl = ADMIN_URL): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** `adminUrl`: another server's maintenance database (e.g. an embedded Postgres a test stops and starts). */
export async function createTestDatabase(label = 'test', adminUrl = ADMIN_URL): Promise<TestDatabase> {
  const name = `easel_${label.replace(/[^a-z0-9]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  await admin((c) => c.query(`create database "${name}"`), adminUrl);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const db = createDb(url.toString(), { max: 5 });
  await migrateToLatest(db);
  return {
    url: url.toString(),
    name,
    db,
    async drop() {
      await db.destroy();
      // WITH (FORCE) ends sessions a crashed child process may have left behind.
      await admin((c) => c.query(`drop database if exists "${name}" with (force)`), adminUrl);
    },
  };
}
