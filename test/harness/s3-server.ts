// Starts the S3-compatible server as a separate process (as MinIO would be in deployment) and
// learns its endpoint from the JSON line it prints when ready.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const script = fileURLToPath(new URL('../../bin/local/s3-server.ts', import.meta.url));

export interface S3ServerProcess {
  endpoint: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

export async function startS3ServerProcess(env: NodeJS.ProcessEnv = {}): Promise<S3ServerProcess> {
  const child = spawn(process.execPath, [script], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (!child.stdout) throw new Error('S3 server: no stdout pipe');
  const lines = createInterface({ input: child.stdout });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`S3 server exited before it was ready (code ${code})`);
  });
  const ready = (async () => {
    for await (const line of lines) {
      const parsed = JSON.parse(line) as { endpoint?: string };
      if (parsed.endpoint) return parsed.endpoint;
    }
    throw new Error('S3 server closed its output before it was ready');
  })();
  const endpoint = await Promise.race([ready, exited]);
  return {
    endpoint,
    child,
    async stop() {
      if (child.exitCode !== null) return;
      const gone = once(child, 'exit');
      child.kill('SIGTERM');
      await gone;
    },
  };
}
