// Where a client command finds its server and its API key: flags first, then EASEL_URL and
// EASEL_API_KEY, then what `easel start` keeps locally (EASEL_DATA_DIR/api-key). Used by
// `easel submit` and `easel usage`.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { UsageError } from '../commands/cli.ts';

export const DEFAULT_URL = 'http://127.0.0.1:8080';

/** The server's base URL: the flag, else EASEL_URL, else the local default; http(s) only. */
export function serverUrl(flag: string | undefined): string {
  const value = flag ?? (process.env.EASEL_URL || DEFAULT_URL);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`the server URL must be an http(s) URL, got '${value}'`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`the server URL must be an http(s) URL, got '${value}'`);
  }
  return url.toString();
}

/** The API key: the flag, else EASEL_API_KEY, else the key `easel start` wrote for local use. */
export function apiKeyFrom(flag: string | undefined, flagName: string): string {
  const key = flag ?? (process.env.EASEL_API_KEY || localApiKey());
  if (!key) throw new UsageError(`no API key: pass ${flagName} or set EASEL_API_KEY`);
  return key;
}

function localApiKey(): string | undefined {
  try {
    const file = join(resolve(process.env.EASEL_DATA_DIR ?? '.easel'), 'api-key');
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}
