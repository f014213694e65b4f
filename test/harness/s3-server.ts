// Starts the S3-compatible server as a separate process (as MinIO would be in deployment) and
// learns its endpoint from the JSON line it prints when ready.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../bin/local/embedded-postgres.ts';
import { parseLogLine, spawnChild } from '../../bin/local/service-process.ts';

export interface S3ServerProcess {
  endpoint: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export async function startS3ServerProcess(env: NodeJS.ProcessEnv = {}): Promise<S3ServerProcess> {
  const isEndpoint = (line: string) => parseLogLine(line)?.endpoint !== undefined;
  const server = spawnChild({
    args: ['bin/local/s3-server.ts'],
    env: { ...process.env, ...env },
    name: 'S3 server',
    // Its one line on stdout says where it listens; anything else it says is the test's to see.
    onLine: (line) => {
      if (!isEndpoint(line)) process.stderr.write(`${line}\n`);
    },
  });
  const line = await server.waitForLine(isEndpoint, 'it was ready');
  return {
    endpoint: String(parseLogLine(line)?.endpoint),
    child: server.child,
    async stop() {
      await server.stop('SIGTERM');
    },
  };
}

/**
 * An S3 server process that a fault test can kill and bring back on the same port, with its
 * objects kept as files in the same folder (fauxqs writes each object synchronously), so
 * clients configured with `endpoint` reconnect to it without knowing it went away.
 */
export interface RestartableS3Server extends S3ServerProcess {
  port: number;
  storageDir: string;
  readonly running: boolean;
  /** Ends the process abruptly (SIGKILL by default: requests in flight are cut off). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and folder; resolves once it accepts requests. */
  restart(): Promise<void>;
}

export async function startRestartableS3Server(
  options: { port?: number; storageDir?: string } = {},
): Promise<RestartableS3Server> {
  const port = options.port ?? (await freePort());
  const storageDir = options.storageDir ?? (await mkdtemp(join(tmpdir(), 'easel-s3-')));
  const env = { S3_PORT: String(port), S3_STORAGE_DIR: storageDir };
  let current = await startS3ServerProcess(env);
  const alive = () => current.child.exitCode === null && current.child.signalCode === null;
  return {
    port,
    storageDir,
    get endpoint() {
      return current.endpoint;
    },
    get child() {
      return current.child;
    },
    get running() {
      return alive();
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (!alive()) return;
      const gone = once(current.child, 'exit');
      current.child.kill(signal);
      await gone;
    },
    async restart() {
      if (alive()) throw new Error('S3 server is still running');
      current = await startS3ServerProcess(env);
    },
    async stop() {
      if (alive()) await current.stop();
      if (!options.storageDir) await rm(storageDir, { recursive: true, force: true });
    },
  };
}
