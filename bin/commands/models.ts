// `easel models demo|fetch`: put a model folder on disk.

import { resolve } from 'node:path';
import { DEFAULT_ENDPOINT, type FetchProgress, fetchModel } from '../models-fetch.ts';
import { createProgressBar, formatBytes, formatDuration } from '../progress.ts';
import { parseFlags, requireFlag, UsageError } from './cli.ts';

export const modelsUsage = `usage:
  easel models demo DIR                 write the tiny demo text-to-image model into DIR
  easel models demo --translator DIR    write the tiny demo Russian→English (Marian) translator into DIR
  easel models fetch REPO_ID --to DIR [--revision R] [--include GLOB]...

fetch downloads from a Hugging Face-compatible hub: HF_ENDPOINT (default ${DEFAULT_ENDPOINT}),
HF_TOKEN (sent as a bearer token; needed for private and gated repositories). Files go to
PATH.incomplete first and are renamed once their size matches; running again resumes a partial
file and skips complete ones. --include may repeat (\`*\` also matches /). Without it, fetch reads
the repository's model_index.json and takes the files its pipeline's family loads (Stable
Diffusion: model_index.json and the scheduler, tokenizer, text encoder, UNet and VAE decoder).
`;

export async function modelsCommand(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub === 'demo') return demo(rest);
  if (sub === 'fetch') return fetchCommand(rest);
  throw new UsageError(sub === undefined ? 'expected demo or fetch' : `unknown models command '${sub}'`);
}

async function demo(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(args, { translator: { type: 'string' } }, true);
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
