// The operator commands that work straight in Postgres (`easel keys`, `easel models`): where the
// database is, and pg's failures turned into one line an operator can act on.
import type { Db } from '../../db/connect.ts';
import { CliError, describeError, UsageError } from './cli.ts';

/** --database-url, else DATABASE_URL. */
export function databaseUrl(flag: string | undefined): string {
  const url = flag ?? process.env.DATABASE_URL;
  if (!url) throw new UsageError('set DATABASE_URL or pass --database-url');
  if (!/^postgres(ql)?:\/\//.test(url)) throw new UsageError('the database URL must be a postgres:// URL');
  return url;
}

/** Opens the database for one command (`applicationName` shows in pg_stat_activity). */
export async function withDatabase<T>(
  url: string,
  applicationName: string,
  fn: (db: Db) => Promise<T>,
): Promise<T> {
  const { createDb } = await import('../../db/connect.ts');
  const db = createDb(url, { max: 1, applicationName });
  try {
    return await fn(db);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const where = redact(url);
    if (code === '42P01' || code === '42703') {
      throw new CliError(`the database at ${where} is not migrated to this version; run \`easel migrate\``);
    }
    if (code === '3D000' || code === '28P01' || code === '28000' || isConnectionError(error)) {
      throw new CliError(`cannot use the database at ${where}: ${describeError(error)}`);
    }
    throw error;
  } finally {
    await db.destroy();
  }
}

function isConnectionError(error: unknown): boolean {
  if (error instanceof AggregateError) return true; // every address of the host refused
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return true; // ECONNREFUSED, ENOTFOUND, …
  return error instanceof Error && /timeout.*connect|Connection terminated/i.test(error.message);
}

function redact(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'DATABASE_URL';
  }
}
