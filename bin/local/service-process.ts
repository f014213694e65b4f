// Starts one of our services (api/main.ts, gpu-worker/main.ts) as a child process and resolves
// when it logs the JSON line that says it is ready. Used by `easel start` and by the tests.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface ServiceProcess {
  name: string;
  child: ChildProcess;
  /** The ready line, parsed (e.g. `url` for the API). */
  ready: Record<string, unknown>;
  /** Most recent output lines, for diagnostics when something fails. */
  recent(): string[];
  /** Resolves with the first later log line whose `msg` matches. */
  waitForLog(
    msg: string,
    predicate?: (line: Record<string, unknown>) => boolean,
  ): Promise<Record<string, unknown>>;
  /** SIGTERM (or the given signal) and wait for exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface ServiceOptions {
  name: string;
  /** Path relative to the repository root, e.g. 'api/main.ts'. */
  script: string;
  env: NodeJS.ProcessEnv;
  readyMsg: string;
  /** Called with every output line (stdout and stderr), e.g. to forward logs. */
  onLine?: (line: string) => void;
  /** Called with the child as soon as it is spawned, before it is ready (to stop it while it starts). */
  onSpawn?: (child: ChildProcess) => void;
}

const root = fileURLToPath(new URL('../../', import.meta.url));

export async function startService(options: ServiceOptions): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [options.script], {
    cwd: root,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  options.onSpawn?.(child);
  const lines: string[] = [];
  const waiters: {
    msg: string;
    predicate?: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }[] = [];
  const onLine = (line: string) => {
    lines.push(line);
    if (lines.length > 200) lines.shift();
    options.onLine?.(line);
    if (!line.startsWith('{')) return;
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(line);
    } catch {
      return;
    }
    for (const waiter of [...waiters]) {
      if (parsed.msg === waiter.msg && (!waiter.predicate || waiter.predicate(parsed))) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(parsed);
      }
    }
  };
  const { stdout, stderr } = child;
  if (!stdout || !stderr) throw new Error(`${options.name}: no output pipes`);
  createInterface({ input: stdout }).on('line', onLine);
  createInterface({ input: stderr }).on('line', onLine);
  const exit = once(child, 'exit');

  const waitForLog = (msg: string, predicate?: (l: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      waiters.push({ msg, predicate, resolve });
      exit.then(([code, signal]) =>
        reject(
          new Error(
            `${options.name} exited (code ${code}, signal ${signal}) before logging '${msg}'. Last output:\n${lines.slice(-30).join('\n')}`,
          ),
        ),
      );
    });

  const ready = await waitForLog(options.readyMsg);
  return {
    name: options.name,
    child,
    ready,
    recent: () => [...lines],
    waitForLog,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const [code] = await exit;
      return code as number | null;
    },
  };
}
