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
  /** The local server's process; undefined when the tests use an external server. */
  child: ChildProcess | undefined;
  stop(): Promise<void>;
}

/**
 * The S3 server the tests use: the local one (bin/local/s3-server.ts) as a process of its own,
 * or, with EASEL_TEST_S3_ENDPOINT set, an external S3-compatible server such as MinIO (its
 * credentials in S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY, which the services read from the same
 * environment). Every test file makes its own bucket, so a shared server is fine. The fault test
 * that kills the S3 server always starts its own (startRestartableS3Server).
 */
export async function startS3ServerProcess(env: NodeJS.ProcessEnv = {}): Promise<S3ServerProcess> {
  const external = process.env.EASEL_TEST_S3_ENDPOINT;
  if (external) return { endpoint: external, child: undefined, async stop() {} };
  return startLocalS3Server(env);
}

async function startLocalS3Server(
  env: NodeJS.ProcessEnv,
): Promise<S3ServerProcess & { child: ChildProcess }> {
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
  let current = await startLocalS3Server(env);
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
      current = await startLocalS3Server(env);
    },
    async stop() {
      if (alive()) await current.stop();
      if (!options.storageDir) await rm(storageDir, { recursive: true, force: true });
    },
  };
}
