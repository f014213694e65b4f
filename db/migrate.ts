import { Migrator } from 'kysely/migration';
import type { Db } from './connect.ts';
import { migrationProvider } from './migrations/index.ts';

export interface MigrationOutcome {
  applied: string[];
}

/** Applies every pending migration; safe to run concurrently from several processes (Kysely locks). */
export async function migrateToLatest(db: Db): Promise<MigrationOutcome> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    const name = failed ? ` (${failed.migrationName})` : '';
    throw new Error(
      `database migration failed${name}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  return { applied: (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName) };
}
