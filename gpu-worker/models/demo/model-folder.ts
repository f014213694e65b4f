// Writing the generated (demo) model folders: at most once, atomically. A folder is written into a
// temporary sibling and renamed into place, so a crash or a concurrent worker never leaves (or
// sees) a half-written model. `marker` is the file written last, whose presence means complete.
import { randomBytes } from 'node:crypto';
import { access, mkdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** A config file's text as diffusers and transformers write it (2-space indent, final newline). */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

export async function ensureFolder(
  dir: string,
  marker: string,
  what: string,
  write: (dir: string) => Promise<void>,
): Promise<string> {
  const markerPath = join(dir, marker);
  if (await exists(markerPath)) return dir;
  await mkdir(dirname(dir), { recursive: true });
  const staging = `${dir}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    await write(staging);
    // rename() replaces an empty `dir` but fails if another process already filled it.
    await rename(staging, dir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if (await exists(markerPath)) return dir;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') {
      throw new Error(`${dir} exists but holds no ${marker}; remove it to have the ${what} written there`, {
        cause: error,
      });
    }
    throw error;
  }
  return dir;
}
