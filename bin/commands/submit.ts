// `easel submit`: a generation on a running Easel server, over its HTTP API. With --wait it follows
// the generation to the end (a progress bar on a terminal) and downloads the images.

import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { GENERATION_LIMITS, SCHEDULER_CHOICES } from '../../shared/generation-contract.ts';
import { createProgressBar, formatDuration, type ProgressBar } from '../progress.ts';
import { createClient, type EaselClient, type Generation, TERMINAL } from '../remote/client.ts';
import { apiKeyFrom, DEFAULT_URL, serverUrl } from '../remote/connection.ts';
import {
  CliError,
  generationFlags,
  intFlag,
  numberFlag,
  outputFiles,
  parseFlags,
  UsageError,
} from './cli.ts';

export const submitUsage = `usage: easel submit PROMPT [--wait [--out FILE.jpg]] [options]

Creates a generation on a running Easel server (POST /v1/generations) and prints its id and
status, or with --wait follows it to the end and downloads its images.

  --url URL                the server (default: EASEL_URL, else ${DEFAULT_URL})
  --key KEY                API key (default: EASEL_API_KEY, else the one \`easel start\` keeps in
                           EASEL_DATA_DIR/api-key)
  --negative-prompt TEXT   what to steer away from
  --width N, --height N    image size in pixels (server default 512×512; multiples of 8)
  --steps N                denoising steps
  --guidance X             classifier-free guidance scale
  --seed N                 0..4294967295 (default: the server picks one; always reported)
  --scheduler NAME         sampler: ${SCHEDULER_CHOICES.join(', ')} (default: the model's)
  --karras                 Karras sigma spacing
  --num-images N           images from consecutive seeds
  --wait                   follow the generation until it has finished, over its event stream (progress
                           on stderr when it is a terminal); exit status 1 if it failed or was canceled
  --timeout SECONDS        with --wait: give up waiting after this long (the generation goes on)
  --out FILE.jpg           with --wait: write the image there (FILE-0.jpg, FILE-1.jpg, … for several)
  --idempotency-key KEY    sent as Idempotency-Key (default: a new random one); the same key and
                           prompt and options give the same generation, so a command that died
                           may be repeated with it without creating a second one
  --json                   print the generation resource (with --wait: as it ended) as JSON

Server-side failures print one line, \`code: detail\`, and exit 1.
`;

const POLL_MS = 500;
/** Long enough to save requests, short enough that a dropped connection is noticed. */
const SERVER_WAIT_SECONDS = 30;
const MAX_INT = 1_000_000;

/** The request body: only the options given, so the server's defaults apply to the rest. */
function requestBody(prompt: string, values: Record<string, string | boolean | undefined>) {
  const str = (name: string) => values[name] as string | undefined;
  const body: Record<string, unknown> = { prompt };
  const ints = [
    ['width', 'width', 1],
    ['height', 'height', 1],
    ['steps', 'steps', 1],
    ['num-images', 'num_images', 1],
  ] as const;
  for (const [flag, field, min] of ints) {
    const value = str(flag);
    if (value !== undefined) body[field] = intFlag(value, `--${flag}`, 0, min, MAX_INT);
  }
  if (str('negative-prompt') !== undefined) body.negative_prompt = str('negative-prompt');
  if (str('guidance') !== undefined)
    body.guidance_scale = numberFlag(str('guidance'), '--guidance', 0, 0, MAX_INT);
  if (str('seed') !== undefined)
    body.seed = intFlag(str('seed'), '--seed', 0, GENERATION_LIMITS.seed.min, GENERATION_LIMITS.seed.max);
  // Passed on as given: the server knows which samplers it has and says so in its 422.
  if (str('scheduler') !== undefined) body.scheduler = str('scheduler');
  if (values.karras) body.karras = true;
  return body;
}

/** The bar's fill and text for a generation as it is now: queue position, step/total, ETA. */
export function progressView(
  generation: Generation,
  now = Date.now(),
): { done: number; total: number; text: string } {
  const etaMs = generation.eta ? Date.parse(generation.eta) - now : Number.NaN;
  const eta = Number.isFinite(etaMs) ? `, ETA ${formatDuration(Math.max(etaMs, 0) / 1000)}` : '';
  if (generation.status === 'queued') {
    const position = generation.queue_position;
    const where =
      position === null || position === undefined
        ? ''
        : position === 0
          ? ', next in line'
          : `, ${position} ahead`;
    return { done: 0, total: 1, text: `queued${where}${eta}` };
  }
  if (generation.status === 'running') {
    const verb = generation.cancel_requested ? 'canceling' : 'running';
    const progress = generation.progress;
    if (!progress) return { done: 0, total: generation.steps, text: `${verb}, starting${eta}` };
    return {
      done: progress.step,
      total: progress.total,
      text: `${verb}, step ${progress.step}/${progress.total}${eta}`,
    };
  }
  return { done: 1, total: 1, text: generation.status };
}

/**
 * Follows a generation until it has finished or the deadline has passed: over the server's event
 * stream (each status change and progress step as it happens, resumed with Last-Event-ID after a
 * dropped connection), or by polling when the server has no streams or refuses one.
 */
async function follow(
  client: EaselClient,
  start: Generation,
  options: { bar: ProgressBar | undefined; deadline: number; signal: AbortSignal },
): Promise<Generation> {
  let current = start;
  let lastStatus = '';
  let waited = false;
  let streaming = true;
  let lastEventId: string | undefined;
  const show = () => {
    if (!options.bar) return;
    const view = progressView(current);
    options.bar.update(view.done, view.total, view.text, current.status !== lastStatus);
    lastStatus = current.status;
  };
  const pastDeadline = () =>
    new CliError(
      `generation ${current.id} is still ${current.status} after the --timeout; it continues on the server`,
    );
  for (;;) {
    show();
    if (TERMINAL.has(current.status)) return current;
    const left = options.deadline - Date.now();
    if (left <= 0) throw pastDeadline();
    if (streaming) {
      // No --timeout: the deadline is infinite, and so is the stream's time.
      const deadline = Number.isFinite(left) ? AbortSignal.timeout(Math.ceil(left)) : undefined;
      const signal = deadline ? AbortSignal.any([options.signal, deadline]) : options.signal;
      let events: Awaited<ReturnType<EaselClient['streamGeneration']>>;
      try {
        events = await client.streamGeneration(current.id, signal, lastEventId);
      } catch (error) {
        if (deadline?.aborted) throw pastDeadline();
        throw error;
      }
      if (events) {
        let seen = false;
        for await (const event of events) {
          seen = true;
          current = event.generation;
          lastEventId = event.id ?? lastEventId;
          show();
          if (TERMINAL.has(current.status)) return current;
        }
        if (deadline?.aborted) throw pastDeadline();
        options.signal.throwIfAborted();
        // Dropped before the end: resume at once; if it gave nothing, poll once before retrying.
        if (seen) continue;
      } else streaming = false;
    }
    if (!waited) await delay(Math.min(POLL_MS, left), undefined, { signal: options.signal });
    // Only when no bar shows progress: a held answer would freeze it.
    const wait = options.bar
      ? undefined
      : Math.max(1, Math.min(SERVER_WAIT_SECONDS, Math.floor(left / 1000)));
    ({ generation: current, waited } = await client.getGeneration(current.id, wait));
  }
}

function summary(generation: Generation): string {
  const ran =
    generation.started_at && generation.finished_at
      ? ` in ${formatDuration((Date.parse(generation.finished_at) - Date.parse(generation.started_at)) / 1000)}`
      : '';
  return (
    `generation ${generation.id} ${generation.status}${ran}: seed ${generation.seed}` +
    `${generation.scheduler ? `, scheduler ${generation.scheduler}` : ''}, ${generation.width}×${generation.height}`
  );
}

function failureLine(generation: Generation): string {
  if (generation.status === 'canceled') return `generation ${generation.id} was canceled`;
  const error = generation.error;
  return `generation ${generation.id} failed${error ? `: ${error.code}: ${error.message}` : ''}`;
}

export async function submitCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseFlags(
    args,
    {
      url: { type: 'string' },
      key: { type: 'string' },
      ...generationFlags,
      wait: { type: 'boolean' },
      timeout: { type: 'string' },
      out: { type: 'string' },
      'idempotency-key': { type: 'string' },
      json: { type: 'boolean' },
    },
    true,
  );
  if (positionals.length !== 1) throw new UsageError('expected one PROMPT argument (quote it)');
  const prompt = positionals[0] as string;
  if (prompt.trim() === '') throw new UsageError('the prompt is empty');
  const body = requestBody(prompt, values);
  if (values.out !== undefined && !values.wait) throw new UsageError('--out needs --wait');
  if (values.timeout !== undefined && !values.wait) throw new UsageError('--timeout needs --wait');
  const timeoutSeconds = intFlag(values.timeout, '--timeout', 0, 1, 7 * 86_400);
  const url = serverUrl(values.url);
  const apiKey = apiKeyFrom(values.key, '--key');
  const idempotencyKey = values['idempotency-key'] ?? randomUUID();
  if (idempotencyKey.trim() === '') throw new UsageError('--idempotency-key must not be empty');

  const abort = new AbortController();
  const client = createClient({ baseUrl: url, apiKey, signal: abort.signal });
  let current: Generation | undefined;
  const onSigint = () => abort.abort();
  process.once('SIGINT', onSigint);
  const bar = values.wait ? createProgressBar() : undefined;
  try {
    current = await client.createGeneration(body, idempotencyKey);
    if (!values.wait) {
      if (values.json) process.stdout.write(`${JSON.stringify(current)}\n`);
      else {
        const position = current.queue_position;
        process.stdout.write(
          `generation ${current.id} ${current.status}` +
            `${typeof position === 'number' ? ` (${position} ahead in the queue)` : ''}\n`,
        );
      }
      return;
    }
    const deadline = timeoutSeconds ? Date.now() + timeoutSeconds * 1000 : Number.POSITIVE_INFINITY;
    current = await follow(client, current, { bar, deadline, signal: abort.signal });
    bar?.finish();

    const files: string[] = [];
    if (current.status === 'succeeded' && values.out !== undefined) {
      const outputs = [...current.outputs].sort((a, b) => a.index - b.index);
      const paths = outputFiles(values.out, outputs.length);
      await mkdir(dirname(resolve(values.out)), { recursive: true });
      const images = await Promise.all(outputs.map((output) => client.download(output)));
      await Promise.all(images.map((bytes, i) => writeFile(paths[i] as string, bytes)));
      files.push(...paths);
    }
    if (values.json) process.stdout.write(`${JSON.stringify(current)}\n`);
    else if (current.status === 'succeeded') {
      const lines = [summary(current)];
      if (files.length) lines.push(`wrote ${files.join(', ')}`);
      else lines.push(...current.outputs.map((o) => `image ${o.index}: ${o.url}`));
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    if (current.status !== 'succeeded') throw new CliError(failureLine(current));
  } catch (error) {
    bar?.finish();
    if (abort.signal.aborted) {
      throw new CliError(
        current
          ? `interrupted; generation ${current.id} continues on the server (it was ${current.status})`
          : `interrupted; repeat with --idempotency-key ${idempotencyKey} to get the generation if it was created`,
      );
    }
    throw error;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
