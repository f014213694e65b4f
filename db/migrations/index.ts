import type { Migration, MigrationProvider } from 'kysely/migration';
import * as m0001 from './0001-initial.ts';
import * as m0002 from './0002-translation-and-scheduler.ts';
import * as m0003 from './0003-idempotency-and-limits.ts';
import * as m0004 from './0004-cancel-and-progress.ts';
import * as m0005 from './0005-webhooks.ts';
import * as m0006 from './0006-workers-and-admin.ts';
import * as m0007 from './0007-webhook-disabled-urls.ts';
import * as m0008 from './0008-millisecond-timestamps.ts';
import * as m0009 from './0009-models.ts';
import * as m0010 from './0010-tenants.ts';

// A static list rather than a folder scan: it works the same from source, a bundle or a container.
const migrations: Record<string, Migration> = {
  '0001-initial': m0001,
  '0002-translation-and-scheduler': m0002,
  '0003-idempotency-and-limits': m0003,
  '0004-cancel-and-progress': m0004,
  '0005-webhooks': m0005,
  '0006-workers-and-admin': m0006,
  '0007-webhook-disabled-urls': m0007,
  '0008-millisecond-timestamps': m0008,
  '0009-models': m0009,
  '0010-tenants': m0010,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => migrations,
};
