// Which Easel process a container runs (from its command, or its image's CMD), and which
// environment variables that process reads: the zod schemas the services parse their environment
// with, and the variables the CLI commands read directly (test/env-table.ts, the README's table).
import type { z } from 'zod';
import { apiEnv } from '../../api/config.ts';
import { workerEnv } from '../../gpu-worker/config.ts';
import { senderEnv } from '../../webhooks/config.ts';
import { DIRECT_READS } from '../env-table.ts';

export type Process = 'api' | 'worker' | 'sender' | 'migrate' | 'models fetch';

const SERVICE_SCHEMAS: Partial<Record<Process, z.ZodObject>> = {
  api: apiEnv,
  worker: workerEnv,
  sender: senderEnv,
};

/** The process a container's command line starts (`node <script> …`). */
export function processOf(command: readonly string[]): Process {
  const script = command.find((arg) => /\.(ts|js)$/.test(arg));
  const rest = script === undefined ? [] : command.slice(command.indexOf(script) + 1);
  switch (script) {
    case 'api/main.ts':
      return 'api';
    case 'gpu-worker/main.ts':
      return 'worker';
    case 'webhooks/main.ts':
      return 'sender';
    case 'bin/easel.js':
      if (rest[0] === 'migrate') return 'migrate';
      if (rest[0] === 'models' && rest[1] === 'fetch') return 'models fetch';
  }
  throw new Error(`no known Easel process in the command ${JSON.stringify(command)}`);
}

/** Every variable the process reads. */
export function variablesOf(process: Process): Set<string> {
  const schema = SERVICE_SCHEMAS[process];
  if (schema) return new Set(Object.keys(schema.shape));
  return new Set(DIRECT_READS.filter((read) => read.readers.includes(process)).map((read) => read.name));
}

/**
 * Parses an environment as the process would at boot; returns the problems (empty when it would
 * start). For the CLI commands: only that what they need is there.
 */
export function envProblems(process: Process, env: Record<string, string>): string[] {
  const schema = SERVICE_SCHEMAS[process];
  if (schema) {
    const result = schema.safeParse(env);
    return result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  }
  if (process === 'migrate' && !/^postgres(ql)?:\/\//.test(env.DATABASE_URL ?? '')) {
    return ['DATABASE_URL: must be a postgres:// URL'];
  }
  return [];
}
