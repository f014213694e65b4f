// What every command shares: telling a usage mistake (exit 2, with the usage text) from a runtime
// failure (exit 1, one line), and turning flag strings into checked values.

import { stat } from 'node:fs/promises';
import { extname } from 'node:path';
import { type ParseArgsOptionsConfig, parseArgs } from 'node:util';

/**
 * The generation options `generate` (in this process) and `submit` (over HTTP) both take, declared
 * once so the two commands cannot drift apart in spelling or type.
 */
export const generationFlags = {
  'negative-prompt': { type: 'string' },
  width: { type: 'string' },
  height: { type: 'string' },
  steps: { type: 'string' },
  guidance: { type: 'string' },
  seed: { type: 'string' },
  scheduler: { type: 'string' },
  karras: { type: 'boolean' },
  'num-images': { type: 'string' },
} as const satisfies ParseArgsOptionsConfig;

/** A mistake in how the command was called: printed with the command's usage, exit status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A failure the user can act on, already phrased for them: printed as is, exit status 1. */
export class CliError extends Error {
  override name = 'CliError';
}

/** parseArgs, with its errors (unknown flag, missing value, stray argument) as UsageError. */
export function parseFlags<T extends ParseArgsOptionsConfig>(
  args: string[],
  options: T,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      throw new UsageError((error as Error).message);
    }
    throw error;
  }
}

export function requireFlag(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`${flag} is required`);
  return value;
}

export function intFlag(
  value: string | undefined,
  flag: string,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const number = /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(number) || number < min || number > max) {
    throw new UsageError(`${flag} must be an integer from ${min} to ${max}, got '${value}'`);
  }
  return number;
}

export function numberFlag(
  value: string | undefined,
  flag: string,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const number = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(number) || number < min || number > max) {
    throw new UsageError(`${flag} must be a number from ${min} to ${max}, got '${value}'`);
  }
  return number;
}

export function choiceFlag<T extends string>(
  value: string | undefined,
  flag: string,
  choices: readonly T[],
  fallback: T,
): T {
  if (value === undefined) return fallback;
  if (!(choices as readonly string[]).includes(value)) {
    throw new UsageError(`${flag} must be one of ${choices.join(', ')}, got '${value}'`);
  }
  return value as T;
}

/** FILE.jpg for one image; FILE-0.jpg, FILE-1.jpg, … for several. */
export function outputFiles(out: string, count: number): string[] {
  if (count === 1) return [out];
  const ext = extname(out);
  const base = ext ? out.slice(0, -ext.length) : out;
  return Array.from({ length: count }, (_, i) => `${base}-${i}${ext}`);
}

/** Fails with a line naming the folder when `dir` is missing or not a folder. */
export async function requireDir(dir: string, what: string): Promise<void> {
  try {
    if ((await stat(dir)).isDirectory()) return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CliError(`${what} folder ${dir} does not exist`);
    }
    throw error;
  }
  throw new CliError(`${what} path ${dir} is not a folder`);
}

/** One line for stderr: the message of the error, plus its cause's when that adds the reason. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  // Node's connect to a host with several addresses fails with an AggregateError and no message.
  if (error instanceof AggregateError && !error.message && error.errors[0] !== undefined) {
    return describeError(error.errors[0]);
  }
  const message = error.message || error.name;
  const cause = error.cause;
  if (
    error.name === 'TypeError' &&
    message === 'fetch failed' &&
    cause instanceof Error &&
    cause.message !== ''
  ) {
    return `${message}: ${cause.message}`;
  }
  return message.replace(/\s*\n\s*/g, ' ').trim();
}
