// Reading a model folder's plain files (no ONNX Runtime here), with errors that name the file
// relative to the folder and the layout the family expects. Every family uses these, and so does
// `easel models fetch` through the family registry, which must not load the runtime.

import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ModelLoadError } from './model-errors.ts';

/** Throws model_missing_file unless `dir/file` is a regular file; `layout` says what the folder should hold. */
export async function requireFile(dir: string, file: string, layout: string): Promise<void> {
  try {
    if ((await stat(join(dir, file))).isFile()) return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  throw new ModelLoadError(
    'model_missing_file',
    dir,
    file,
    `file does not exist in ${dir} (expected ${layout})`,
  );
}

/**
 * JSON as Python's json module writes it: diffusers and transformers save configs with json.dumps,
 * which emits the bare tokens Infinity, -Infinity and NaN (DPMSolverMultistepScheduler's default
 * lambda_min_clipped is -inf). Outside strings they become ±1e999 (parsed as ±Infinity) and null.
 */
export function parsePythonJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    let out = '';
    let inString = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (inString) {
        out += c;
        if (c === '\\') out += text[++i] ?? '';
        else if (c === '"') inString = false;
      } else if (c === '"') {
        inString = true;
        out += c;
      } else if (text.startsWith('-Infinity', i)) {
        out += '-1e999';
        i += 8;
      } else if (text.startsWith('Infinity', i)) {
        out += '1e999';
        i += 7;
      } else if (text.startsWith('NaN', i)) {
        out += 'null';
        i += 2;
      } else out += c;
    }
    if (out === text) throw error;
    return JSON.parse(out);
  }
}

/**
 * Reads `dir/file` as Python-written JSON. A file that does not parse is model_corrupt; a file that
 * cannot be read rejects with the fs error (ENOENT included: callers with optional files catch it).
 */
export async function readModelJson(dir: string, file: string): Promise<unknown> {
  const text = await readFile(join(dir, file), 'utf8');
  try {
    return parsePythonJson(text);
  } catch (error) {
    throw new ModelLoadError('model_corrupt', dir, file, 'not valid JSON', { cause: error });
  }
}
