#!/usr/bin/env node
// The `easel` command line. Each command loads only what it needs.
// Exit status: 0 done, 1 the command failed (one line on stderr), 2 it was called wrongly (usage).
import { CliError, describeError, parseFlags, UsageError } from './commands/cli.ts';

const usage = `usage: easel <command> [options]

service:
  start      run the API, one worker and (when not configured) Postgres, S3 and the demo model
  migrate    apply pending database migrations to DATABASE_URL
  keys       create, list, revoke and change API keys (in DATABASE_URL)

client of a running server (EASEL_URL, EASEL_API_KEY):
  submit     create a generation; with --wait follow it and download its images
  usage      what a key's generations cost on the accelerators, per day or model

local, no server:
  generate   generate images from a prompt with a local model and write JPEGs
  tokenize   print the token ids the text encoder receives for a text
  translate  translate a (Russian) prompt to English with a local translator model
  models     write a demo model, download one from a model hub, or list, register and retire the
             models a server serves (models demo|fetch|list|register|retire)

\`easel <command> --help\` shows a command's options; EASEL_DEBUG=1 adds stack traces to errors.
`;

interface Command {
  run(args: string[]): Promise<void>;
  usage: string;
}

async function migrate(rest: string[]) {
  parseFlags(rest, {});
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

async function load(name: string): Promise<Command | undefined> {
  switch (name) {
    case 'migrate':
      return { run: migrate, usage: 'usage: easel migrate\n\nApplies pending migrations to DATABASE_URL.\n' };
    case 'keys': {
      const m = await import('./commands/keys.ts');
      return { run: m.keysCommand, usage: m.keysUsage };
    }
    case 'submit': {
      const m = await import('./commands/submit.ts');
      return { run: m.submitCommand, usage: m.submitUsage };
    }
    case 'usage': {
      const m = await import('./commands/usage.ts');
      return { run: m.usageCommand, usage: m.usageUsage };
    }
    case 'generate': {
      const m = await import('./commands/generate.ts');
      return { run: m.generateCommand, usage: m.generateUsage };
    }
    case 'tokenize': {
      const m = await import('./commands/tokenize.ts');
      return { run: m.tokenizeCommand, usage: m.tokenizeUsage };
    }
    case 'translate': {
      const m = await import('./commands/translate.ts');
      return { run: m.translateCommand, usage: m.translateUsage };
    }
    case 'models': {
      const m = await import('./commands/models.ts');
      return { run: m.modelsCommand, usage: m.modelsUsage };
    }
    default:
      return undefined;
  }
}

const [command, ...rest] = process.argv.slice(2);

switch (command) {
  case 'start': {
    const { runLocal } = await import('./local/launcher.ts');
    await runLocal();
    break;
  }
  case undefined:
  case '-h':
  case '--help':
  case 'help':
    process.stdout.write(usage);
    break;
  default: {
    const cmd = await load(command);
    if (!cmd) {
      process.stderr.write(`easel: unknown command '${command}'\n\n${usage}`);
      process.exit(2);
    }
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(cmd.usage);
      break;
    }
    try {
      await cmd.run(rest);
    } catch (error) {
      if (error instanceof UsageError) {
        process.stderr.write(`easel ${command}: ${error.message}\n\n${cmd.usage}`);
        process.exit(2);
      }
      process.stderr.write(`easel ${command}: ${describeError(error)}\n`);
      if (process.env.EASEL_DEBUG && !(error instanceof CliError)) console.error(error);
      process.exit(1);
    }
  }
}
