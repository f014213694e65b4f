#!/usr/bin/env node
// The `easel` command line. Each command loads only what it needs.
import { parseArgs } from 'node:util';

const usage = `usage: easel <command>

commands:
  start      run the API, one worker and (when not configured) Postgres, S3 and the demo model
  migrate    apply pending database migrations to DATABASE_URL
`;

const [command, ...rest] = process.argv.slice(2);

async function migrate() {
  parseArgs({ args: rest, options: {} });
  const url = process.env.DATABASE_URL;
  if (!url) {
    console.error('easel migrate: DATABASE_URL is not set');
    process.exit(1);
  }
  const { createDb } = await import('../db/connect.ts');
  const { migrateToLatest } = await import('../db/migrate.ts');
  const db = createDb(url, { max: 1 });
  try {
    const { applied } = await migrateToLatest(db);
    console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
  } finally {
    await db.destroy();
  }
}

switch (command) {
  case 'start': {
    const { runLocal } = await import('./local/launcher.ts');
    await runLocal();
    break;
  }
  case 'migrate':
    await migrate();
    break;
  case undefined:
  case '-h':
  case '--help':
  case 'help':
    process.stdout.write(usage);
    break;
  default:
    process.stderr.write(`easel: unknown command '${command}'\n\n${usage}`);
    process.exit(2);
}
