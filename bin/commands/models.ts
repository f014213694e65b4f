// `easel models`: put a model folder on disk (demo, fetch), and the registry of the models the
// fleet serves (list, register, retire), straight in the database (DATABASE_URL) like `easel keys`.

import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Db } from '../../db/connect.ts';
import type { ModelLoad } from '../../db/models.repository.ts';
import type { Model, ModelCapabilities } from '../../db/types.ts';
import { DEFAULT_ENDPOINT, type FetchProgress, fetchModel } from '../models-fetch.ts';
import { createProgressBar, formatBytes, formatDuration } from '../progress.ts';
import { CliError, describeError, intFlag, parseFlags, requireDir, requireFlag, UsageError } from './cli.ts';
import { databaseUrl, withDatabase } from './database.ts';

export const modelsUsage = `usage:
  easel models demo [--family sd|kandinsky21|kandinsky22] DIR
                                        write a tiny demo text-to-image model into DIR (default: sd)
  easel models demo --translator DIR    write the tiny demo Russian→English (Marian) translator into DIR
  easel models fetch REPO_ID --to DIR [--revision R] [--include GLOB]...
  easel models list [--json]
  easel models register ID --dir DIR [--json]
  easel models register ID --family NAME --capabilities FILE [--json]
  easel models retire ID [--json]

fetch downloads from a Hugging Face-compatible hub: HF_ENDPOINT (default ${DEFAULT_ENDPOINT}),
HF_TOKEN (sent as a bearer token; needed for private and gated repositories). Files go to
PATH.incomplete first and are renamed once their size matches; running again resumes a partial
file and skips complete ones. --include may repeat (\`*\` also matches /). Without it, fetch reads
the repository's model_index.json and takes the files its pipeline's family loads (Stable
Diffusion: model_index.json and the scheduler, tokenizer, text encoder, UNet and VAE decoder).

list, register and retire work on the models table of the database at --database-url URL
(default: DATABASE_URL). The API takes a new model at once, other changes within its
MODEL_CACHE_SECONDS.
list      every model, retired ones included: family, status (available: a live worker holds
          it; no_workers; retired), live workers (heartbeated within WORKER_STALE_SECONDS,
          default 30), queued generations, default sampler, steps and size. --json prints the
          models as GET /v1/models shows them.
register  makes the API accept generations for ID before any of its workers has started (they
          wait in its queue), or returns a retired model to service. --dir reads a model folder
          as a worker does (its family from model_index.json, capabilities narrowed by its
          easel-model.json); --family and --capabilities give them instead, FILE holding a whole
          capabilities object as GET /v1/models shows it. A worker's announcement at start
          replaces them with what its folder says.
retire    the API refuses new generations for ID (422 model_not_found); generations already
          queued still run. \`register\` returns it to service.
`;

export async function modelsCommand(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'demo':
      return demo(rest);
    case 'fetch':
      return fetchCommand(rest);
    case 'list':
      return list(rest);
    case 'register':
      return register(rest);
    case 'retire':
      return retire(rest);
    case undefined:
      throw new UsageError('expected demo, fetch, list, register or retire');
    default:
      throw new UsageError(`unknown models command '${sub}'`);
  }
}

async function demo(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    args,
    { translator: { type: 'string' }, family: { type: 'string' } },
    true,
  );
  if (values.translator !== undefined) {
    if (positionals.length > 0) throw new UsageError('give either DIR or --translator DIR, not both');
    const dir = resolve(requireFlag(values.translator, '--translator'));
    const { writeDemoTranslator } = await import('../../gpu-worker/models/demo/marian-model.ts');
    await writeDemoTranslator(dir);
    process.stdout.write(`wrote the demo translator to ${dir}\n`);
    return;
  }
  if (positionals.length !== 1) throw new UsageError('expected one DIR');
  const dir = resolve(positionals[0] as string);
  const family = values.family ?? 'sd';
  const kandinsky = { kandinsky21: '2.1', kandinsky22: '2.2' } as const;
  if (family === 'kandinsky21' || family === 'kandinsky22') {
    const { writeDemoKandinskyModel } = await import('../../gpu-worker/models/demo/kandinsky-model.ts');
    await writeDemoKandinskyModel(dir, { version: kandinsky[family] });
    process.stdout.write(`wrote the demo Kandinsky ${kandinsky[family]} model to ${dir}\n`);
    return;
  }
  if (family !== 'sd') throw new UsageError(`--family is sd, kandinsky21 or kandinsky22, got '${family}'`);
  const { writeDemoModel } = await import('../../gpu-worker/models/demo/sd-model.ts');
  await writeDemoModel(dir);
  process.stdout.write(`wrote the demo model to ${dir}\n`);
}

async function fetchCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    args,
    {
      to: { type: 'string' },
      revision: { type: 'string' },
      include: { type: 'string', multiple: true },
    },
    true,
  );
  if (positionals.length !== 1) throw new UsageError('expected one REPO_ID');
  const repo = positionals[0] as string;
  const to = resolve(requireFlag(values.to, '--to'));
  const endpoint = process.env.HF_ENDPOINT || DEFAULT_ENDPOINT;

  const bar = createProgressBar();
  const started = performance.now();
  let firstData: { at: number; transferred: number } | undefined;
  const onProgress = (p: FetchProgress) => {
    if (bar) {
      if (p.event === 'data' || p.event === 'start') {
        const now = performance.now();
        firstData ??= { at: now, transferred: p.transferred };
        const seconds = (now - firstData.at) / 1000;
        const rate = seconds > 0.5 ? (p.transferred - firstData.transferred) / seconds : 0;
        const eta = rate > 0 ? formatDuration((p.totalBytes - p.bytes) / rate) : '--';
        bar.update(
          p.bytes,
          p.totalBytes,
          `${formatBytes(p.bytes)}/${formatBytes(p.totalBytes)} ${rate > 0 ? `${formatBytes(rate)}/s` : '--'} ETA ${eta} ` +
            `[${p.filesDone + 1}/${p.fileCount}] ${p.file}`,
        );
      }
      return;
    }
    // Not a terminal: one plain line per file.
    if (p.event === 'listed') {
      process.stderr.write(`${p.fileCount} files, ${formatBytes(p.totalBytes)} in all\n`);
    } else if (p.event === 'skip') {
      process.stderr.write(`${p.file}: already complete\n`);
    } else if (p.event === 'start' && p.resumedFrom) {
      process.stderr.write(`${p.file}: resuming from ${formatBytes(p.resumedFrom)}\n`);
    } else if (p.event === 'done') {
      process.stderr.write(`${p.file}: ${formatBytes(p.fileBytes)}\n`);
    }
  };

  const abort = new AbortController();
  const onSigint = () => abort.abort(new Error('interrupted; run the same command again to resume'));
  process.once('SIGINT', onSigint);
  try {
    const result = await fetchModel(
      {
        repo,
        to,
        revision: values.revision,
        include: values.include,
        endpoint,
        token: process.env.HF_TOKEN || undefined,
        signal: abort.signal,
      },
      onProgress,
    );
    bar?.finish();
    const seconds = (performance.now() - started) / 1000;
    const skipped = result.files.filter((f) => f.status === 'skipped').length;
    process.stdout.write(
      `fetched ${repo} into ${to}: ${result.files.length} files, ${formatBytes(result.totalBytes)}` +
        ` (${formatBytes(result.transferred)} downloaded in ${formatDuration(seconds)}` +
        `${skipped ? `, ${skipped} already complete` : ''})\n`,
    );
  } catch (error) {
    bar?.finish();
    if (abort.signal.aborted) throw abort.signal.reason;
    throw error;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

const databaseFlags = {
  'database-url': { type: 'string' },
  json: { type: 'boolean' },
} as const;

// The API's WORKER_STALE_SECONDS default: run with the API's environment, list judges liveness as
// GET /v1/models does.
const DEFAULT_STALE_SECONDS = 30;

function staleSeconds(): number {
  return intFlag(
    process.env.WORKER_STALE_SECONDS || undefined,
    'WORKER_STALE_SECONDS',
    DEFAULT_STALE_SECONDS,
    1,
    86_400,
  );
}

async function modelId(positionals: string[]): Promise<string> {
  const [id, ...extra] = positionals;
  if (id === undefined || extra.length > 0) throw new UsageError('expected one model ID');
  const { MODEL_ID_PATTERN } = await import('../../db/queue.ts');
  if (!MODEL_ID_PATTERN.test(id)) {
    throw new UsageError(
      `model ID '${id}' must be lowercase letters, digits, '.', '_' and '-', starting with a letter or digit (64 at most)`,
    );
  }
  return id;
}

/** The models with their load, as GET /v1/models shows them (one mapping for the API and the CLI). */
async function resources(db: Db, rows: Model[], staleAfterSeconds: number) {
  const { modelLoad } = await import('../../db/models.repository.ts');
  const { toModelResource } = await import('../../api/models.handlers.ts');
  const loads: Map<string, ModelLoad> = await modelLoad(
    db,
    rows.map((row) => row.id),
    staleAfterSeconds,
  );
  return rows.map((row) => toModelResource(row, loads.get(row.id)));
}

function describeDefaults(capabilities: ModelCapabilities): string {
  const { default_sampler: sampler, steps, width, height } = capabilities;
  return `${sampler}, ${steps.default} steps, ${width.default}x${height.default}`;
}

function time(date: Date | null): string {
  return date ? date.toISOString().replace(/\.\d{3}Z$/, 'Z') : '-';
}

async function list(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(args, databaseFlags, true);
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const url = databaseUrl(values['database-url']);
  const stale = staleSeconds();
  const { listModels } = await import('../../db/models.repository.ts');
  const models = await withDatabase(url, 'easel-models', async (db) =>
    resources(db, await listModels(db), stale),
  );
  if (values.json) {
    process.stdout.write(`${JSON.stringify(models)}\n`);
    return;
  }
  if (models.length === 0) {
    process.stderr.write(
      'no models yet: a worker registers its model when it starts, or `easel models register ID --dir DIR`\n',
    );
    return;
  }
  const rows = [
    ['ID', 'FAMILY', 'STATUS', 'LIVE WORKERS', 'QUEUED', 'SAMPLER', 'STEPS', 'SIZE'],
    ...models.map((m) => [
      m.id,
      m.family,
      m.status,
      String(m.live_workers),
      String(m.queued),
      m.defaults.scheduler,
      String(m.defaults.steps),
      `${m.defaults.width}x${m.defaults.height}`,
    ]),
  ];
  const widths =
    rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  for (const row of rows) {
    process.stdout.write(
      `${row
        .map((cell, column) => cell.padEnd(widths[column] ?? 0))
        .join('  ')
        .trimEnd()}\n`,
    );
  }
}

/** A model folder's family and capabilities, read as its worker reads them (no ONNX Runtime). */
async function fromFolder(
  dir: string,
  id: string,
): Promise<{ family: string; capabilities: ModelCapabilities }> {
  await requireDir(dir, 'model');
  const { readModelCard } = await import('../../gpu-worker/models/model-card.ts');
  const { ModelLoadError } = await import('../../gpu-worker/models/model-errors.ts');
  try {
    const card = await readModelCard(dir, id);
    return { family: card.family.name, capabilities: card.capabilities };
  } catch (error) {
    if (error instanceof ModelLoadError) throw new CliError(`model folder ${dir}: ${error.message}`);
    throw error;
  }
}

async function fromFiles(
  family: string,
  file: string,
): Promise<{ family: string; capabilities: ModelCapabilities }> {
  const { FAMILIES } = await import('../../gpu-worker/models/load-model.ts');
  const names = FAMILIES.map((f) => f.name);
  if (!names.includes(family))
    throw new UsageError(`--family must be one of ${names.join(', ')}, got '${family}'`);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CliError(`capabilities file ${file} does not exist`);
    throw new CliError(`capabilities file ${file}: ${describeError(error)}`);
  }
  const { ModelCapabilitiesSchema } = await import('../../shared/model-capabilities.ts');
  const parsed = ModelCapabilitiesSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) => `${issue.path.join('.') || 'capabilities'}: ${issue.message}`,
    );
    throw new CliError(`capabilities file ${file}: ${problems.join('; ')}`);
  }
  return { family, capabilities: parsed.data };
}

async function register(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    args,
    {
      ...databaseFlags,
      dir: { type: 'string' },
      family: { type: 'string' },
      capabilities: { type: 'string' },
    },
    true,
  );
  const id = await modelId(positionals);
  const byFlags = values.family !== undefined || values.capabilities !== undefined;
  if (values.dir !== undefined && byFlags) {
    throw new UsageError('give either --dir or --family and --capabilities, not both');
  }
  if (values.dir === undefined && !byFlags)
    throw new UsageError('give --dir, or --family and --capabilities');
  const url = databaseUrl(values['database-url']);
  const stale = staleSeconds();
  const model =
    values.dir !== undefined
      ? await fromFolder(resolve(requireFlag(values.dir, '--dir')), id)
      : await fromFiles(
          requireFlag(values.family, '--family'),
          resolve(requireFlag(values.capabilities, '--capabilities')),
        );
  const { findModel, registerModel } = await import('../../db/models.repository.ts');
  const { before, resource } = await withDatabase(url, 'easel-models', async (db) => {
    const before = await findModel(db, id);
    const row = await registerModel(db, { id, ...model });
    const [resource] = await resources(db, [row], stale);
    return { before, resource };
  });
  if (values.json) {
    process.stdout.write(`${JSON.stringify(resource)}\n`);
    return;
  }
  const what = !before
    ? `registered model '${id}'`
    : before.retired_at
      ? `returned model '${id}' to service`
      : `updated model '${id}'`;
  process.stdout.write(
    `${what} (${model.family}; defaults ${describeDefaults(model.capabilities)}); ` +
      `live workers: ${resource?.live_workers ?? 0}\n`,
  );
}

async function retire(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(args, databaseFlags, true);
  const id = await modelId(positionals);
  const url = databaseUrl(values['database-url']);
  const stale = staleSeconds();
  const { findModel, retireModel } = await import('../../db/models.repository.ts');
  const { before, row, resource } = await withDatabase(url, 'easel-models', async (db) => {
    const before = await findModel(db, id);
    if (!before) throw new CliError(`no model '${id}'; \`easel models list\` shows them`);
    const row = await retireModel(db, id);
    if (!row) throw new CliError(`model '${id}' disappeared while retiring it`);
    const [resource] = await resources(db, [row], stale);
    return { before, row, resource };
  });
  if (values.json) {
    process.stdout.write(`${JSON.stringify(resource)}\n`);
    return;
  }
  if (before.retired_at) {
    process.stdout.write(`model '${id}' was already retired at ${time(row.retired_at)}\n`);
    return;
  }
  const queued = resource?.queued ?? 0;
  process.stdout.write(
    `retired model '${id}': the API refuses new generations for it; ` +
      `${queued} queued generation${queued === 1 ? '' : 's'} still run\n`,
  );
}
