// Test support (not a test file): runs commands as a user does, in a child process, through the
// one child-process helper (bin/local/service-process.ts) that `easel start` uses for the services.
import { type ChildOptions, REPO_ROOT, spawnChild } from './local/service-process.ts';

export {
  type Child,
  type LogRecord,
  type Service,
  type ServiceProcess,
  spawnChild,
  startService,
} from './local/service-process.ts';

export const repoRoot = REPO_ROOT;

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end and returns its exit code and output (`node <args>` by default). */
export async function runToEnd(options: Omit<ChildOptions, 'capture'>): Promise<CliRun> {
  const child = spawnChild({ ...options, capture: true });
  const { code } = await child.exited;
  return { code: code as number, stdout: child.stdout(), stderr: child.stderr() };
}

/** `node bin/easel.ts …`; `env` replaces the environment entirely, so a developer's EASEL_* or DATABASE_URL never leak in. */
export function runEasel(args: string[], env: NodeJS.ProcessEnv): Promise<CliRun> {
  return runToEnd({ args: ['bin/easel.ts', ...args], env });
}

/** The environment of the test runner minus everything that would point the CLI somewhere. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name === 'DATABASE_URL' || name.startsWith('EASEL_')) continue;
    env[name] = value;
  }
  return { ...env, ...extra };
}

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
