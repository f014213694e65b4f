// Downloads a model repository from a Hugging Face-compatible endpoint into a folder, resumably.
//
// URL layout (the hub's, also served by mirrors set through HF_ENDPOINT):
//   GET  {endpoint}/api/models/{repo}/revision/{revision}   → { siblings: [{ rfilename, size? }] }
//   GET  {endpoint}/{repo}/resolve/{revision}/{path}        → the file (often via a redirect to a CDN)
// Each file is written to `{path}.incomplete` and renamed once its size matches the listing, so a
// folder never holds a truncated file under its real name. An interrupted file is continued with
// `Range: bytes=N-`, both within one run (network failures are retried) and by running again.

import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** The parts of a diffusers/optimum ONNX Stable Diffusion export that Easel loads. */
export const DEFAULT_INCLUDE: readonly string[] = [
  'model_index.json',
  '*/config.json',
  'scheduler/*',
  'tokenizer/*',
  'text_encoder/*',
  'unet/*',
  'vae_decoder/*',
];

export interface FetchModelOptions {
  /** `owner/name`. */
  repo: string;
  /** Destination folder (created if needed). */
  to: string;
  /** Branch, tag or commit; default `main`. */
  revision?: string;
  /** Glob patterns over repository paths (`*` and `?` also match `/`, as in huggingface-cli). */
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

interface Entry {
  path: string;
  size: number | undefined;
}

interface Sibling {
  rfilename?: unknown;
  size?: unknown;
  lfs?: { size?: unknown } | null;
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;

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

function parseSize(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

function networkReason(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause;
  const detail = cause instanceof Error ? cause.message || (cause as NodeJS.ErrnoException).code : undefined;
  const message = error instanceof Error ? error.message : String(error);
  return detail ? `${message}: ${detail}` : message;
}

export async function fetchModel(
  options: FetchModelOptions,
  onProgress?: (progress: FetchProgress) => void,
): Promise<FetchResult> {
  const { repo, to, token, signal } = options;
  const revision = options.revision ?? 'main';
  const include = options.include?.length ? options.include : DEFAULT_INCLUDE;
  const endpoint = (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const retries = options.retries ?? 5;
  const retryDelayMs = options.retryDelayMs ?? 1000;
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
  const rev = encodeURIComponent(revision);
  const where = `${repo} at revision '${revision}' on ${endpoint}`;

  const headersFor = (url: string, extra: Record<string, string> = {}): Record<string, string> => {
    const headers: Record<string, string> = {
      'user-agent': 'easel-cli',
      // Sizes in the listing are of the stored bytes: no transparent decompression.
      'accept-encoding': 'identity',
      ...extra,
    };
    if (token && new URL(url).origin === origin) headers.authorization = `Bearer ${token}`;
    return headers;
  };

  /** Turns a refused response into an error a person can act on. */
  const refusal = (response: Response, file?: string): FetchModelError => {
    const { status } = response;
    const hubCode = response.headers.get('x-error-code');
    const subject = file ? `${file} in ${where}` : where;
    if (status === 401 || status === 403) {
      const hint = token
        ? 'HF_TOKEN was sent but does not grant access (check the token, and for a gated model accept its terms on the hub)'
        : 'set HF_TOKEN to an access token that can read it (private and gated repositories need one)' +
          (hubCode === 'RepoNotFound'
            ? ', or check the repository id: the hub also answers this for one that does not exist'
            : '');
      return new FetchModelError(
        'unauthorized',
        `access to ${subject} was refused (HTTP ${status}): ${hint}`,
      );
    }
    if (status === 404) {
      if (file) {
        return new FetchModelError('not_found', `not found in ${where} (HTTP 404)`, file);
      }
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
      undefined,
    );
  };

  const request = async (url: string, init: RequestInit, file?: string): Promise<Response> => {
    try {
      return await fetch(url, { ...init, signal });
    } catch (error) {
      if (signal?.aborted) throw error;
      const reason = networkReason(error);
      if (file) throw new TransientError(reason, { cause: error });
      throw new FetchModelError('network', `cannot reach ${endpoint}: ${reason}`, undefined, {
        cause: error,
      });
    }
  };

  // 1. The listing, with sizes: plain, then ?blobs=true, then a HEAD per file still unsized.
  const listUrl = `${endpoint}/api/models/${repo}/revision/${rev}`;
  const list = async (url: string): Promise<Sibling[]> => {
    const response = await request(url, { headers: headersFor(url, { accept: 'application/json' }) });
    if (!response.ok) {
      await response.body?.cancel();
      throw refusal(response);
    }
    let body: unknown;
    try {
      body = await response.json();
    } catch (error) {
      throw new FetchModelError('http', `${url} did not return JSON`, undefined, { cause: error });
    }
    const siblings = (body as { siblings?: unknown } | null)?.siblings;
    if (!Array.isArray(siblings)) {
      throw new FetchModelError('http', `${url} returned no "siblings" list (is ${endpoint} a model hub?)`);
    }
    return siblings as Sibling[];
  };
  const sizeIn = (sibling: Sibling | undefined): number | undefined => {
    const size = typeof sibling?.size === 'number' ? sibling.size : sibling?.lfs?.size;
    return typeof size === 'number' && Number.isSafeInteger(size) && size >= 0 ? size : undefined;
  };

  const siblings = await list(listUrl);
  const available = siblings.flatMap((s) => (typeof s.rfilename === 'string' ? [s.rfilename] : []));
  const selected = selectFiles(available, include).sort();
  if (selected.length === 0) {
    throw new FetchModelError(
      'no_files',
      `no file of ${where} matches ${include.join(' ')} (the repository has ${available.length} files` +
        `${available.length ? `, e.g. ${available.slice(0, 5).join(', ')}` : ''})`,
    );
  }
  const byPath = new Map(siblings.map((s) => [s.rfilename, s]));
  const entries: Entry[] = selected.map((path) => ({ path, size: sizeIn(byPath.get(path)) }));
  for (const entry of entries) safePath(to, entry.path);

  if (entries.some((e) => e.size === undefined)) {
    const withBlobs = new Map((await list(`${listUrl}?blobs=true`)).map((s) => [s.rfilename, s]));
    for (const entry of entries) entry.size ??= sizeIn(withBlobs.get(entry.path));
  }
  const fileUrl = (path: string) =>
    `${endpoint}/${repo}/resolve/${rev}/${path.split('/').map(encodeURIComponent).join('/')}`;
  for (const entry of entries) {
    if (entry.size === undefined) entry.size = await headSize(fileUrl(entry.path), entry.path);
  }

  async function headSize(url: string, file: string): Promise<number | undefined> {
    let current = url;
    for (let hop = 0; hop < 10; hop++) {
      const response = await request(current, {
        method: 'HEAD',
        headers: headersFor(current),
        redirect: 'manual',
      });
      // The hub answers an LFS file's HEAD with a redirect carrying the real size.
      const linked = parseSize(response.headers.get('x-linked-size'));
      if (linked !== undefined) return linked;
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        current = new URL(location, current).href;
        continue;
      }
      if (!response.ok) throw refusal(response, file);
      return parseSize(response.headers.get('content-length'));
    }
    throw new FetchModelError('http', 'too many redirects', file);
  }

  // 2. The files, one at a time (the big ones saturate the link on their own).
  const totalBytes = entries.reduce((sum, e) => sum + (e.size ?? 0), 0);
  let bytes = 0;
  let transferred = 0;
  let filesDone = 0;
  const report = (
    event: FetchEvent,
    file: string,
    fileBytes: number,
    fileSize: number | undefined,
    extra = {},
  ) =>
    onProgress?.({
      event,
      file,
      fileBytes,
      fileSize,
      bytes,
      totalBytes,
      transferred,
      filesDone,
      fileCount: entries.length,
      ...extra,
    });
  report('listed', '', 0, undefined);

  await mkdir(to, { recursive: true });
  const files: FetchedFile[] = [];

  for (const entry of entries) {
    const target = safePath(to, entry.path);
    const partial = `${target}.incomplete`;
    const existing = await sizeOf(target);
    if (existing !== undefined && (entry.size === undefined || existing === entry.size)) {
      bytes += existing;
      filesDone++;
      files.push({ path: entry.path, size: existing, status: 'skipped' });
      report('skip', entry.path, existing, entry.size);
      continue;
    }
    await mkdir(dirname(target), { recursive: true });
    let resumed = false;
    for (let attempt = 0; ; attempt++) {
      try {
        resumed = (await downloadOnce(entry, partial)).resumed;
        break;
      } catch (error) {
        // Whatever reached the disk stays there: the next attempt continues from it.
        if (!(error instanceof TransientError)) throw error;
        if (attempt >= retries) {
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
        if (retryDelayMs > 0) await delay(retryDelayMs * (attempt + 1), undefined, { signal });
      }
    }
    await rename(partial, target);
    const size = (await sizeOf(target)) ?? 0;
    filesDone++;
    files.push({ path: entry.path, size, status: resumed ? 'resumed' : 'downloaded' });
    report('done', entry.path, size, entry.size);
  }
  return { dir: to, files, totalBytes, transferred };

  /** One request for the rest of the file; leaves `partial` complete or throws. */
  async function downloadOnce(entry: Entry, partial: string): Promise<{ resumed: boolean }> {
    const { path } = entry;
    let offset = (await sizeOf(partial)) ?? 0;
    if (entry.size !== undefined && offset > entry.size) {
      await rm(partial, { force: true });
      offset = 0;
    }
    if (entry.size !== undefined && offset === entry.size) {
      bytes += offset;
      return { resumed: offset > 0 };
    }
    const url = fileUrl(path);
    const response = await request(
      url,
      { headers: headersFor(url, offset > 0 ? { range: `bytes=${offset}-` } : {}), redirect: 'follow' },
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
      throw refusal(response, path);
    }

    let append = false;
    let expected = entry.size;
    const length = response.headers.get('content-encoding')
      ? undefined
      : parseSize(response.headers.get('content-length'));
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
      if (total !== undefined && expected !== undefined && total !== expected) {
        await response.body?.cancel();
        throw mismatch(path, total, expected, false);
      }
      expected ??= total;
      append = true;
    } else {
      // 200: the whole file (the server ignored the range, or none was asked for).
      if (length !== undefined && expected !== undefined && length !== expected) {
        await response.body?.cancel();
        throw mismatch(path, length, expected, false);
      }
      expected ??= length;
      offset = 0;
    }

    bytes += offset;
    report('start', path, offset, expected, append ? { resumedFrom: offset } : {});
    let written = offset;
    const handle = await open(partial, append ? 'a' : 'w');
    try {
      const reader = response.body?.getReader();
      while (reader) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (error) {
          if (signal?.aborted) throw error;
          throw new TransientError(networkReason(error), { cause: error });
        }
        if (chunk.done) break;
        await handle.write(chunk.value);
        written += chunk.value.byteLength;
        bytes += chunk.value.byteLength;
        transferred += chunk.value.byteLength;
        report('data', path, written, expected);
      }
    } catch (error) {
      // The next attempt re-reads the prefix from disk and counts it again.
      bytes -= written;
      throw error;
    } finally {
      await handle.close();
    }
    if (expected !== undefined && written !== expected) {
      bytes -= written;
      // Shorter: keep it, a later run resumes it. Longer: it is not this file, drop it.
      if (written > expected) await rm(partial, { force: true });
      throw mismatch(path, written, expected, written < expected);
    }
    return { resumed: append };
  }
}

function mismatch(path: string, got: number, expected: number, kept: boolean): FetchModelError {
  return new FetchModelError(
    'size_mismatch',
    `size mismatch: the server sends ${got} bytes but the listing says ${expected}` +
      (kept ? ` (${path}.incomplete is kept; running again resumes it)` : ''),
    path,
  );
}
