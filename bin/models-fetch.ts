// Downloads a model repository from a Hugging Face-compatible endpoint into a folder, resumably.
//
// URL layout (the hub's, also served by mirrors set through HF_ENDPOINT):
//   GET  {endpoint}/api/models/{repo}/revision/{revision}   → { siblings: [{ rfilename, size? }] }
//   GET  {endpoint}/{repo}/resolve/{revision}/{path}        → the file (often via a redirect to a CDN)
// Each file is written to `{path}.incomplete` and renamed once its size matches the listing, so a
// folder never holds a truncated file under its real name. An interrupted file is continued with
// `Range: bytes=N-`, both within one run (network failures are retried) and by running again.
// Without --include, the files are the ones the model's family loads: model_index.json names the
// pipeline (`_class_name`) and the family registry (gpu-worker/models/load-model.ts) says which.
//
// Why not @huggingface/hub (checked at 2.17.5, the hub's own maintained JS client): it lists
// (`listFiles`, the /tree API) and hands out a file as a Blob (`downloadFile`), but what this module
// exists for sits below that Blob, on the HTTP response, where the library does not let us in:
// - Resuming: its only writer to disk (`downloadFileToCacheDir`) restarts every file from byte 0
//   into the HF cache layout (blobs + symlinks), not a plain folder; `blob.slice(n).stream()` sends
//   `Range: bytes=n-end` but never checks the answer, so a server that ignores the Range (200,
//   whole file) would be appended to the kept prefix, and a 206 from another offset goes unseen.
// - Telling a transient failure (network, 5xx, 429: retry from where the file stopped) from a final
//   one (401, 404): a failed range request surfaces as a stream aborted with a message string, with
//   no status; errors keep the status but drop `X-Error-Code` (RepoNotFound, RevisionNotFound,
//   EntryNotFound), which our messages use to say what to fix.
// - Tokens: it refuses any token not starting with `hf_` before sending anything (mirrors and
//   tests use others), so the Authorization header would be ours anyway; it takes no AbortSignal.
// - Weight: 11 packages, ~12 MB (with @huggingface/tasks and a WASM chunker) for one CLI command.
// What would be left to it is two URL templates. Files the hub stores with Xet are still served by
// /resolve/ (a redirect to a Range-capable URL), so this downloader reads them too.

import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

const MODEL_INDEX = 'model_index.json';

export interface FetchModelOptions {
  /** `owner/name`. */
  repo: string;
  /** Destination folder (created if needed). */
  to: string;
  /** Branch, tag or commit; default `main`. */
  revision?: string;
  /**
   * Glob patterns over repository paths (`*` and `?` also match `/`, as in huggingface-cli).
   * Default: the files the model's family loads, found through model_index.json.
   */
  include?: readonly string[];
  endpoint?: string;
  /** Sent as `Authorization: Bearer …` to the endpoint's own origin. */
  token?: string;
  /** Retries per file after a network failure or a 5xx/429, each resuming where it stopped (default 5). */
  retries?: number;
  /** Wait before retry n is n × this (default 1000 ms). */
  retryDelayMs?: number;
  signal?: AbortSignal;
}

export type FetchEvent = 'listed' | 'start' | 'data' | 'done' | 'skip';

export interface FetchProgress {
  event: FetchEvent;
  /** Repository path of the current file ('' for `listed`). */
  file: string;
  /** Bytes of the current file on disk so far (including a resumed prefix). */
  fileBytes: number;
  fileSize: number | undefined;
  /** Bytes of the selected files on disk so far, including ones already complete before this run. */
  bytes: number;
  /** Sum of the selected files' sizes (files of unknown size count 0). */
  totalBytes: number;
  /** Bytes received over the network in this run. */
  transferred: number;
  filesDone: number;
  fileCount: number;
  /** Offset a download resumed from (`start` events only). */
  resumedFrom?: number;
}

export interface FetchedFile {
  path: string;
  size: number;
  status: 'downloaded' | 'resumed' | 'skipped';
}

export interface FetchResult {
  dir: string;
  files: FetchedFile[];
  totalBytes: number;
  transferred: number;
}

export type FetchErrorCode =
  | 'unauthorized'
  | 'not_found'
  | 'size_mismatch'
  | 'network'
  | 'http'
  | 'no_files'
  | 'invalid';

export class FetchModelError extends Error {
  readonly code: FetchErrorCode;
  /** Repository path of the file at fault, if one is. */
  readonly file: string | undefined;

  constructor(code: FetchErrorCode, message: string, file?: string, options?: ErrorOptions) {
    super(file ? `${file}: ${message}` : message, options);
    this.name = 'FetchModelError';
    this.code = code;
    this.file = file;
  }
}

/** Thrown inside one attempt when trying again (from where the file stopped) may succeed. */
class TransientError extends Error {
  override name = 'TransientError';
}

/** fnmatch-style glob (`*`, `?`, `[…]`), as huggingface_hub applies allow_patterns. */
export function globToRegExp(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*') source += '.*';
    else if (c === '?') source += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end === -1) source += '\\[';
      else {
        let set = glob.slice(i + 1, end).replace(/\\/g, '\\\\');
        if (set.startsWith('!')) set = `^${set.slice(1)}`;
        source += `[${set}]`;
        i = end;
      }
    } else source += c.replace(/[.+^${}()|\\\]]/g, '\\$&');
  }
  return new RegExp(`^${source}$`, 's');
}

export function selectFiles(paths: readonly string[], include: readonly string[]): string[] {
  const patterns = include.map(globToRegExp);
  return paths.filter((path) => patterns.some((pattern) => pattern.test(path)));
}

// ── The hub: one run's requests, and its refusals turned into errors a person can act on ──

interface Hub {
  repo: string;
  revision: string;
  endpoint: string;
  /** The endpoint's origin: the only one the token is sent to. */
  origin: string;
  token: string | undefined;
  signal: AbortSignal | undefined;
  /** `owner/name at revision 'r' on endpoint`, for messages. */
  where: string;
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;

function connect(options: FetchModelOptions): Hub {
  const { repo, token, signal } = options;
  const revision = options.revision ?? 'main';
  const endpoint = (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  if (!REPO_ID.test(repo) || repo.includes('..')) {
    throw new FetchModelError('invalid', `'${repo}' is not a repository id (expected owner/name)`);
  }
  let origin: string;
  try {
    origin = new URL(endpoint).origin;
  } catch (error) {
    throw new FetchModelError('invalid', `HF_ENDPOINT '${endpoint}' is not a URL`, undefined, {
      cause: error,
    });
  }
  return {
    repo,
    revision,
    endpoint,
    origin,
    token,
    signal,
    where: `${repo} at revision '${revision}' on ${endpoint}`,
  };
}

function listUrl(hub: Hub): string {
  return `${hub.endpoint}/api/models/${hub.repo}/revision/${encodeURIComponent(hub.revision)}`;
}

function fileUrl(hub: Hub, path: string): string {
  const rev = encodeURIComponent(hub.revision);
  return `${hub.endpoint}/${hub.repo}/resolve/${rev}/${path.split('/').map(encodeURIComponent).join('/')}`;
}

function headersFor(hub: Hub, url: string, extra: Record<string, string> = {}): Record<string, string> {
  const headers: Record<string, string> = {
    'user-agent': 'easel-cli',
    // Sizes in the listing are of the stored bytes: no transparent decompression.
    'accept-encoding': 'identity',
    ...extra,
  };
  if (hub.token && new URL(url).origin === hub.origin) headers.authorization = `Bearer ${hub.token}`;
  return headers;
}

function networkReason(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  const detail = cause instanceof Error ? cause.message || (cause as NodeJS.ErrnoException).code : undefined;
  const message = error instanceof Error ? error.message : String(error);
  return detail ? `${message}: ${detail}` : message;
}

/** A network failure is transient for a file download (retried), final for the listing. */
async function request(hub: Hub, url: string, init: RequestInit, file?: string): Promise<Response> {
  try {
    return await fetch(url, { ...init, signal: hub.signal });
  } catch (error) {
    if (hub.signal?.aborted) throw error;
    const reason = networkReason(error);
    if (file) throw new TransientError(reason, { cause: error });
    throw new FetchModelError('network', `cannot reach ${hub.endpoint}: ${reason}`, undefined, {
      cause: error,
    });
  }
}

/** Turns a refused response into an error a person can act on. */
function refusal(hub: Hub, response: Response, file?: string): FetchModelError {
  const { status } = response;
  const { repo, revision, endpoint, where } = hub;
  const hubCode = response.headers.get('x-error-code');
  const subject = file ? `${file} in ${where}` : where;
  if (status === 401 || status === 403) {
    const hint = hub.token
      ? 'HF_TOKEN was sent but does not grant access (check the token, and for a gated model accept its terms on the hub)'
      : 'set HF_TOKEN to an access token that can read it (private and gated repositories need one)' +
        (hubCode === 'RepoNotFound'
          ? ', or check the repository id: the hub also answers this for one that does not exist'
          : '');
    return new FetchModelError('unauthorized', `access to ${subject} was refused (HTTP ${status}): ${hint}`);
  }
  if (status === 404) {
    if (file) return new FetchModelError('not_found', `not found in ${where} (HTTP 404)`, file);
    const what =
      hubCode === 'RevisionNotFound'
        ? `revision '${revision}' of ${repo} was not found on ${endpoint}`
        : hubCode === 'RepoNotFound'
          ? `repository ${repo} was not found on ${endpoint}`
          : `repository ${repo} or revision '${revision}' was not found on ${endpoint}`;
    return new FetchModelError('not_found', `${what} (HTTP 404): check the repository id and --revision`);
  }
  return new FetchModelError(
    'http',
    `${endpoint} answered HTTP ${status} ${response.statusText} for ${subject}`.trim(),
  );
}

// ── The listing: which files, and how big each is ──

interface Sibling {
  rfilename?: unknown;
  size?: unknown;
  lfs?: { size?: unknown } | null;
}

interface Entry {
  path: string;
  size: number | undefined;
}

async function listSiblings(hub: Hub, query = ''): Promise<Sibling[]> {
  const url = `${listUrl(hub)}${query}`;
  const response = await request(hub, url, { headers: headersFor(hub, url, { accept: 'application/json' }) });
  if (!response.ok) {
    await response.body?.cancel();
    throw refusal(hub, response);
  }
  let body: unknown;
  try {
    body = await response.json();
  } catch (error) {
    throw new FetchModelError('http', `${url} did not return JSON`, undefined, { cause: error });
  }
  const siblings = (body as { siblings?: unknown } | null)?.siblings;
  if (!Array.isArray(siblings)) {
    throw new FetchModelError('http', `${url} returned no "siblings" list (is ${hub.endpoint} a model hub?)`);
  }
  return siblings as Sibling[];
}

function siblingSize(sibling: Sibling | undefined): number | undefined {
  const size = typeof sibling?.size === 'number' ? sibling.size : sibling?.lfs?.size;
  return typeof size === 'number' && Number.isSafeInteger(size) && size >= 0 ? size : undefined;
}

function parseSize(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The size a HEAD reports, following redirects by hand: the hub answers an LFS file's HEAD with a redirect carrying it. */
async function headSize(hub: Hub, file: string): Promise<number | undefined> {
  let current = fileUrl(hub, file);
  for (let hop = 0; hop < 10; hop++) {
    const response = await request(hub, current, {
      method: 'HEAD',
      headers: headersFor(hub, current),
      redirect: 'manual',
    });
    const linked = parseSize(response.headers.get('x-linked-size'));
    if (linked !== undefined) return linked;
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      current = new URL(location, current).href;
      continue;
    }
    if (!response.ok) throw refusal(hub, response, file);
    return parseSize(response.headers.get('content-length'));
  }
  throw new FetchModelError('http', 'too many redirects', file);
}

/** model_index.json: the copy already in `to` when it is complete, else from the hub (not written). */
async function readModelIndex(hub: Hub, to: string, size: number | undefined): Promise<unknown> {
  const local = join(to, MODEL_INDEX);
  const localSize = await sizeOf(local);
  let text: string;
  if (localSize !== undefined && (size === undefined || localSize === size)) {
    text = await readFile(local, 'utf8');
  } else {
    const url = fileUrl(hub, MODEL_INDEX);
    const response = await request(hub, url, { headers: headersFor(hub, url), redirect: 'follow' });
    if (!response.ok) {
      await response.body?.cancel();
      throw refusal(hub, response, MODEL_INDEX);
    }
    text = await response.text();
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new FetchModelError('invalid', 'not valid JSON', MODEL_INDEX, { cause: error });
  }
}

/** The globs of the files the model's family loads, from the pipeline model_index.json names. */
async function familyFiles(hub: Hub, to: string, siblings: readonly Sibling[]): Promise<readonly string[]> {
  const index = siblings.find((s) => s.rfilename === MODEL_INDEX);
  if (!index) {
    throw new FetchModelError(
      'no_files',
      `${hub.where} has no ${MODEL_INDEX}, so which model family it is (and which files that needs) is unknown: ` +
        'name the files with --include',
    );
  }
  const className = ((await readModelIndex(hub, to, siblingSize(index))) as { _class_name?: unknown } | null)
    ?._class_name;
  // Imported here: the CLI loads gpu-worker/ only through import() (the registry loads no ONNX Runtime).
  const { familyFor, SUPPORTED_FAMILIES } = await import('../gpu-worker/models/load-model.ts');
  const family = typeof className === 'string' ? familyFor(className) : undefined;
  if (!family) {
    throw new FetchModelError(
      'invalid',
      `names the pipeline ${JSON.stringify(className ?? null)}, which Easel does not load (supported: ` +
        `${SUPPORTED_FAMILIES.join(', ')}); name the files with --include to fetch it anyway`,
      MODEL_INDEX,
    );
  }
  return family.fetchFiles;
}

/** The files to fetch, sorted, each with its size: from the listing, then ?blobs=true, then a HEAD. */
async function listEntries(hub: Hub, to: string, include: readonly string[] | undefined): Promise<Entry[]> {
  const siblings = await listSiblings(hub);
  const patterns = include?.length ? include : await familyFiles(hub, to, siblings);
  const available = siblings.flatMap((s) => (typeof s.rfilename === 'string' ? [s.rfilename] : []));
  const selected = selectFiles(available, patterns).sort();
  if (selected.length === 0) {
    throw new FetchModelError(
      'no_files',
      `no file of ${hub.where} matches ${patterns.join(' ')} (the repository has ${available.length} files` +
        `${available.length ? `, e.g. ${available.slice(0, 5).join(', ')}` : ''})`,
    );
  }
  const byPath = new Map(siblings.map((s) => [s.rfilename, s]));
  const entries: Entry[] = selected.map((path) => ({ path, size: siblingSize(byPath.get(path)) }));
  for (const entry of entries) safePath(to, entry.path);

  if (entries.some((e) => e.size === undefined)) {
    const withBlobs = new Map((await listSiblings(hub, '?blobs=true')).map((s) => [s.rfilename, s]));
    for (const entry of entries) entry.size ??= siblingSize(withBlobs.get(entry.path));
  }
  for (const entry of entries) entry.size ??= await headSize(hub, entry.path);
  return entries;
}

// ── Progress: what is on disk and what came over the network, across files ──

interface Tally {
  readonly totalBytes: number;
  /** Bytes of the selected files on disk (see FetchProgress.bytes). */
  bytes: number;
  transferred: number;
  filesDone: number;
  report(
    event: FetchEvent,
    file: string,
    fileBytes: number,
    fileSize: number | undefined,
    extra?: Partial<FetchProgress>,
  ): void;
}

function createTally(entries: readonly Entry[], onProgress?: (progress: FetchProgress) => void): Tally {
  const tally: Tally = {
    totalBytes: entries.reduce((sum, e) => sum + (e.size ?? 0), 0),
    bytes: 0,
    transferred: 0,
    filesDone: 0,
    report(event, file, fileBytes, fileSize, extra = {}) {
      onProgress?.({
        event,
        file,
        fileBytes,
        fileSize,
        bytes: tally.bytes,
        totalBytes: tally.totalBytes,
        transferred: tally.transferred,
        filesDone: tally.filesDone,
        fileCount: entries.length,
        ...extra,
      });
    },
  };
  return tally;
}

// ── One file: skip it, or download it (resuming, retrying) and rename it into place ──

function safePath(to: string, path: string): string {
  const target = resolve(to, path);
  const root = resolve(to);
  if (
    path === '' ||
    path.includes('\\') ||
    path.startsWith('/') ||
    path.split('/').some((part) => part === '..' || part === '.' || part === '') ||
    !target.startsWith(root + sep)
  ) {
    throw new FetchModelError('invalid', 'the listing names a path outside the destination folder', path);
  }
  return target;
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    const info = await stat(path);
    return info.isFile() ? info.size : undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

interface Retry {
  retries: number;
  retryDelayMs: number;
}

async function fetchFile(
  hub: Hub,
  to: string,
  entry: Entry,
  tally: Tally,
  retry: Retry,
): Promise<FetchedFile> {
  const target = safePath(to, entry.path);
  const partial = `${target}.incomplete`;
  const existing = await sizeOf(target);
  if (existing !== undefined && (entry.size === undefined || existing === entry.size)) {
    tally.bytes += existing;
    tally.filesDone++;
    tally.report('skip', entry.path, existing, entry.size);
    return { path: entry.path, size: existing, status: 'skipped' };
  }
  await mkdir(dirname(target), { recursive: true });
  let resumed = false;
  for (let attempt = 0; ; attempt++) {
    try {
      resumed = (await downloadOnce(hub, entry, partial, tally)).resumed;
      break;
    } catch (error) {
      // Whatever reached the disk stays there: the next attempt continues from it.
      if (!(error instanceof TransientError)) throw error;
      if (attempt >= retry.retries) {
        const kept = (await sizeOf(partial)) ?? 0;
        throw new FetchModelError(
          'network',
          `the download was interrupted (${error.message}); ` +
            (kept > 0 ? `${kept} bytes are kept in ${entry.path}.incomplete; ` : '') +
            'run the same command again to resume',
          entry.path,
          { cause: error },
        );
      }
      if (retry.retryDelayMs > 0)
        await delay(retry.retryDelayMs * (attempt + 1), undefined, { signal: hub.signal });
    }
  }
  await rename(partial, target);
  const size = (await sizeOf(target)) ?? 0;
  tally.filesDone++;
  tally.report('done', entry.path, size, entry.size);
  return { path: entry.path, size, status: resumed ? 'resumed' : 'downloaded' };
}

/** One request for the rest of the file; leaves `partial` complete or throws. */
async function downloadOnce(
  hub: Hub,
  entry: Entry,
  partial: string,
  tally: Tally,
): Promise<{ resumed: boolean }> {
  const { path } = entry;
  let offset = (await sizeOf(partial)) ?? 0;
  if (entry.size !== undefined && offset > entry.size) {
    await rm(partial, { force: true });
    offset = 0;
  }
  if (entry.size !== undefined && offset === entry.size) {
    tally.bytes += offset;
    return { resumed: offset > 0 };
  }
  const url = fileUrl(hub, path);
  const response = await request(
    hub,
    url,
    { headers: headersFor(hub, url, offset > 0 ? { range: `bytes=${offset}-` } : {}), redirect: 'follow' },
    path,
  );
  if (response.status === 416 && offset > 0) {
    // The stored prefix does not fit the file on the server: start this file over.
    await response.body?.cancel();
    await rm(partial, { force: true });
    throw new TransientError('the server refused to resume (HTTP 416)');
  }
  if (!response.ok) {
    await response.body?.cancel();
    if (response.status >= 500 || response.status === 429) {
      throw new TransientError(`HTTP ${response.status} ${response.statusText}`.trim());
    }
    throw refusal(hub, response, path);
  }

  const body = await placeBody(response, entry, offset);
  tally.bytes += body.offset;
  tally.report('start', path, body.offset, body.expected, body.append ? { resumedFrom: body.offset } : {});
  const written = await writeBody(hub, response, partial, path, body, tally);
  if (body.expected !== undefined && written !== body.expected) {
    tally.bytes -= written;
    // Shorter: keep it, a later run resumes it. Longer: it is not this file, drop it.
    if (written > body.expected) await rm(partial, { force: true });
    throw mismatch(path, written, body.expected, written < body.expected);
  }
  return { resumed: body.append };
}

/**
 * Where the response's bytes go: after the kept prefix (206 from exactly `offset`) or from the start
 * (200: the server sent the whole file), and the file's size as far as anyone says.
 */
interface Placement {
  /** Append to the kept prefix (206) or write the file from the start (200). */
  append: boolean;
  /** Where the body starts in the file. */
  offset: number;
  /** The file's size: the listing's, else the response's own. */
  expected: number | undefined;
}

async function placeBody(response: Response, entry: Entry, offset: number): Promise<Placement> {
  const { path, size: listed } = entry;
  if (response.status === 206) {
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get('content-range') ?? '');
    if (!range || Number(range[1]) !== offset) {
      await response.body?.cancel();
      throw new FetchModelError(
        'http',
        `asked for bytes from ${offset}, the server sent '${response.headers.get('content-range') ?? 'no Content-Range'}'`,
        path,
      );
    }
    const total = range[3] === '*' ? undefined : Number(range[3]);
    if (total !== undefined && listed !== undefined && total !== listed) {
      await response.body?.cancel();
      throw mismatch(path, total, listed, false);
    }
    return { append: true, offset, expected: listed ?? total };
  }
  // 200: the whole file (the server ignored the range, or none was asked for).
  const length = response.headers.get('content-encoding')
    ? undefined
    : parseSize(response.headers.get('content-length'));
  if (length !== undefined && listed !== undefined && length !== listed) {
    await response.body?.cancel();
    throw mismatch(path, length, listed, false);
  }
  return { append: false, offset: 0, expected: listed ?? length };
}

/** Streams the body into `partial` and returns the file's bytes on disk; counts them in the tally as they land. */
async function writeBody(
  hub: Hub,
  response: Response,
  partial: string,
  path: string,
  { append, offset, expected }: Placement,
  tally: Tally,
): Promise<number> {
  let written = offset;
  const handle = await open(partial, append ? 'a' : 'w');
  try {
    const reader = response.body?.getReader();
    while (reader) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (hub.signal?.aborted) throw error;
        throw new TransientError(networkReason(error), { cause: error });
      }
      if (chunk.done) break;
      await handle.write(chunk.value);
      written += chunk.value.byteLength;
      tally.bytes += chunk.value.byteLength;
      tally.transferred += chunk.value.byteLength;
      tally.report('data', path, written, expected);
    }
  } catch (error) {
    // The next attempt re-reads the prefix from disk and counts it again.
    tally.bytes -= written;
    throw error;
  } finally {
    await handle.close();
  }
  return written;
}

function mismatch(path: string, got: number, expected: number, kept: boolean): FetchModelError {
  return new FetchModelError(
    'size_mismatch',
    `size mismatch: the server sends ${got} bytes but the listing says ${expected}` +
      (kept ? ` (${path}.incomplete is kept; running again resumes it)` : ''),
    path,
  );
}

/** Lists `repo`, picks its files (--include, else its family's), and brings each into `to` complete. */
export async function fetchModel(
  options: FetchModelOptions,
  onProgress?: (progress: FetchProgress) => void,
): Promise<FetchResult> {
  const hub = connect(options);
  const { to } = options;
  const retry = { retries: options.retries ?? 5, retryDelayMs: options.retryDelayMs ?? 1000 };
  const entries = await listEntries(hub, to, options.include);
  const tally = createTally(entries, onProgress);
  tally.report('listed', '', 0, undefined);

  await mkdir(to, { recursive: true });
  const files: FetchedFile[] = [];
  // One file at a time: the big ones saturate the link on their own.
  for (const entry of entries) files.push(await fetchFile(hub, to, entry, tally, retry));
  return { dir: to, files, totalBytes: tally.totalBytes, transferred: tally.transferred };
}
