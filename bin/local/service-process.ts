// Child processes of ours, one way: `easel start` runs the services with it, and the tests and
// benchmarks run the services, the CLI and the S3 server with it (through bin/testing.ts and
// test/harness/). It reads the child's output line by line, keeps the recent lines and resolves
// waiters on them: a service is ready when it logs its ready line (shared/log-events.ts).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { API_LISTENING, WEBHOOK_SENDER_READY, WORKER_READY } from '../../shared/log-events.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A JSON log line, parsed. */
export type LogRecord = Record<string, unknown>;

/** The recent output lines of a service, and waiters on the ones still to come. */
export interface LogWatch {
  /** Feeds one output line (without its newline). */
  push(line: string): void;
  /** Fails every pending waiter, and every later one, with this reason (the output has ended). */
  end(reason: string): void;
  /** Resolves with the first later line that matches (or, with `past`, the first kept one that does). */
  waitForLine(match: (line: string) => boolean, what?: string, options?: { past?: boolean }): Promise<string>;
  /** Resolves with the first later JSON log line whose `msg` is `msg` (and that the predicate accepts). */
  waitForLog(
    msg: string,
    predicate?: (record: LogRecord) => boolean,
    options?: { past?: boolean },
  ): Promise<LogRecord>;
  /** The most recent lines, oldest first. */
  recent(): string[];
}

export function createLogWatch(
  name: string,
  options: { keep?: number; onLine?: (line: string) => void } = {},
): LogWatch {
  const keep = options.keep ?? 200;
  const lines: string[] = [];
  const waiters = new Set<{
    match: (line: string) => boolean;
    resolve: (line: string) => void;
    fail: () => void;
  }>();
  let ended: string | undefined;
  const failure = (what: string) =>
    new Error(`${name} ${ended} before ${what}. Last output:\n${lines.slice(-30).join('\n')}`);

  const waitForLine = (
    match: (line: string) => boolean,
    what = 'the awaited line',
    { past = false }: { past?: boolean } = {},
  ) =>
    new Promise<string>((resolve, reject) => {
      const seen = past ? lines.find(match) : undefined;
      if (seen !== undefined) return resolve(seen);
      if (ended !== undefined) return reject(failure(what));
      const waiter = {
        match,
        resolve(line: string) {
          waiters.delete(waiter);
          resolve(line);
        },
        fail() {
          waiters.delete(waiter);
          reject(failure(what));
        },
      };
      waiters.add(waiter);
    });

  return {
    push(line) {
      lines.push(line);
      if (lines.length > keep) lines.shift();
      options.onLine?.(line);
      for (const waiter of [...waiters]) if (waiter.match(line)) waiter.resolve(line);
    },
    end(reason) {
      ended ??= reason;
      for (const waiter of [...waiters]) waiter.fail();
    },
    waitForLine,
    async waitForLog(msg, predicate, options) {
      const matches = (line: string) => {
        const parsed = parseLogLine(line);
        return parsed !== undefined && parsed.msg === msg && (!predicate || predicate(parsed));
      };
      return parseLogLine(await waitForLine(matches, `logging '${msg}'`, options)) as LogRecord;
    },
    recent: () => [...lines],
  };
}

/** A JSON log line parsed, or undefined for anything else. */
export function parseLogLine(line: string): LogRecord | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    return JSON.parse(line) as LogRecord;
  } catch {
    return undefined;
  }
}

export interface ChildOptions {
  /** Default: this Node.js (process.execPath), running `args`. */
  command?: string;
  /** For Node.js: the script first, a path relative to the repository root (e.g. 'api/main.ts'). */
  args: string[];
  /** Replaces the environment entirely. */
  env?: NodeJS.ProcessEnv;
  /** Default: the repository root. */
  cwd?: string;
  /** In a process group of its own (it then leads it: kill(-pid) reaches the whole group). */
  detached?: boolean;
  /** Name in error messages (default: the script). */
  name?: string;
  /** Called with every output line (stdout and stderr), e.g. to forward logs. */
  onLine?: (line: string) => void;
  /** Keep the whole of stdout and stderr as text (for short commands whose output a test reads). */
  capture?: boolean;
  /** How many recent lines to keep (default 200). */
  keep?: number;
}

export interface Child extends Omit<LogWatch, 'push' | 'end'> {
  child: ChildProcess;
  /** Resolves once it has exited and its output is read to the end. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** All of stdout / stderr so far, with `capture` (else empty). */
  stdout(): string;
  stderr(): string;
  /** The signal (SIGTERM by default), then its exit; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a child process whose output is read line by line. */
export function spawnChild(options: ChildOptions): Child {
  const child = spawn(options.command ?? process.execPath, options.args, {
    cwd: options.cwd ?? REPO_ROOT,
    env: options.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached,
  });
  const name = options.name ?? options.args[0] ?? options.command ?? 'child';
  const watch = createLogWatch(name, { keep: options.keep, onLine: options.onLine });
  const { stdout, stderr } = child;
  if (!stdout || !stderr) throw new Error(`${name}: no output pipes`);
  const text = { stdout: '', stderr: '' };
  if (options.capture) {
    stdout.on('data', (chunk) => {
      text.stdout += chunk;
    });
    stderr.on('data', (chunk) => {
      text.stderr += chunk;
    });
  }
  createInterface({ input: stdout }).on('line', watch.push);
  createInterface({ input: stderr }).on('line', watch.push);
  // 'close' comes after 'exit' once both pipes have ended, so every line has been read.
  const exited = once(child, 'close').then(([code, signal]) => {
    watch.end(`exited (code ${code}, signal ${signal})`);
    return { code: code as number | null, signal: signal as NodeJS.Signals | null };
  });
  return {
    child,
    exited,
    stdout: () => text.stdout,
    stderr: () => text.stderr,
    waitForLine: watch.waitForLine,
    waitForLog: watch.waitForLog,
    recent: watch.recent,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return (await exited).code;
    },
  };
}

/** A service of ours that has reported ready, as a child process or in this one (test harness). */
export interface Service {
  name: string;
  /** The ready line, parsed (e.g. `url` for the API, `worker_id` for a worker). */
  ready: LogRecord;
  /** Most recent output lines, for diagnostics when something fails. */
  recent(): string[];
  /** Resolves with the first later log line whose `msg` matches (with `past`, a recent one counts too). */
  waitForLog(
    msg: string,
    predicate?: (line: LogRecord) => boolean,
    options?: { past?: boolean },
  ): Promise<LogRecord>;
  /** SIGTERM (or the given signal) and wait until it has stopped; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface ServiceProcess extends Service {
  child: ChildProcess;
}

/** Our three services: the script that runs each as a process, and the line that says it is ready. */
export const SERVICES = {
  api: { script: 'api/main.ts', readyMsg: API_LISTENING },
  worker: { script: 'gpu-worker/main.ts', readyMsg: WORKER_READY },
  'webhook-sender': { script: 'webhooks/main.ts', readyMsg: WEBHOOK_SENDER_READY },
} as const;

export type ServiceName = keyof typeof SERVICES;

export interface ServiceOptions {
  name: string;
  /** Path relative to the repository root, e.g. 'api/main.ts' (default: SERVICES[name]). */
  script?: string;
  env: NodeJS.ProcessEnv;
  /** The log line that says it is ready (default: SERVICES[name]). */
  readyMsg?: string;
  /** Called with every output line (stdout and stderr), e.g. to forward logs. */
  onLine?: (line: string) => void;
  /** Called with the child as soon as it is spawned, before it is ready (to stop it while it starts). */
  onSpawn?: (child: ChildProcess) => void;
}

/** Starts a service as a child process; resolves once it has logged its ready line. */
export async function startService(options: ServiceOptions): Promise<ServiceProcess> {
  const known = SERVICES[options.name as ServiceName] as (typeof SERVICES)[ServiceName] | undefined;
  const script = options.script ?? known?.script;
  const readyMsg = options.readyMsg ?? known?.readyMsg;
  if (!script || !readyMsg) throw new Error(`${options.name}: no script or ready line given`);
  const started = spawnChild({
    args: [script],
    env: options.env,
    name: options.name,
    onLine: options.onLine,
  });
  options.onSpawn?.(started.child);
  const ready = await started.waitForLog(readyMsg);
  return {
    name: options.name,
    child: started.child,
    ready,
    recent: started.recent,
    waitForLog: started.waitForLog,
    stop: started.stop,
  };
}
