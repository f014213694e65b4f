// A content hash of a model folder: SHA-256 over every file's relative path, size and own SHA-256.
// Workers announce it, so an operator sees when two workers serve one model id from different
// files. Hashing gigabytes of weights takes seconds, so each file's digest is cached by path,
// size and modification time (a file rewritten in place changes its mtime).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';

interface CachedDigest {
  size: number;
  mtimeMs: number;
  sha256: string;
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && !entry.name.startsWith('.'))
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

async function digestFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** `sha256:<hex>` of the folder; `cacheFile` (JSON) keeps per-file digests between starts. */
export async function modelContentHash(dir: string, cacheFile?: string): Promise<string> {
  let cache: Record<string, CachedDigest> = {};
  if (cacheFile) {
    cache = await readFile(cacheFile, 'utf8').then(
      (text) => JSON.parse(text) as Record<string, CachedDigest>,
      () => ({}),
    );
  }
  const folder = createHash('sha256');
  let changed = false;
  for (const path of await filesUnder(dir)) {
    const info = await stat(path);
    let entry = cache[path];
    if (!entry || entry.size !== info.size || entry.mtimeMs !== info.mtimeMs) {
      entry = { size: info.size, mtimeMs: info.mtimeMs, sha256: await digestFile(path) };
      cache[path] = entry;
      changed = true;
    }
    folder.update(`${relative(dir, path).split(sep).join('/')}\0${info.size}\0${entry.sha256}\n`);
  }
  if (cacheFile && changed) {
    // Several workers on one box share the cache: write aside, then rename (atomic).
    await mkdir(dirname(cacheFile), { recursive: true });
    const temporary = `${cacheFile}.${process.pid}.tmp`;
    await writeFile(temporary, JSON.stringify(cache));
    await rename(temporary, cacheFile);
  }
  return `sha256:${folder.digest('hex')}`;
}
