// A local S3-compatible server (fauxqs) for the no-configuration `npm start` and for tests.
// Run as a script it prints one JSON line {"endpoint": ...} on stdout once it accepts requests,
// so a parent process can start it on a free port and learn where it is.
import { startFauxqs } from 'fauxqs';

export interface LocalS3Server {
  endpoint: string;
  stop(): Promise<void>;
}

export async function startLocalS3Server(
  options: { port?: number; storageDir?: string } = {},
): Promise<LocalS3Server> {
  const server = await startFauxqs({
    port: options.port ?? 0,
    logger: false,
    // Objects as files under the data folder, so results survive a restart of `npm start`.
    ...(options.storageDir ? { s3StorageDir: options.storageDir, dataDir: options.storageDir } : {}),
  });
  return {
    endpoint: `http://127.0.0.1:${server.port}`,
    stop: async () => {
      // fauxqs' handle has no typed stop in its d.ts but has one at run time.
      const stoppable = server as unknown as { stop?: () => Promise<void> };
      await stoppable.stop?.();
    },
  };
}

if (import.meta.main) {
  const port = Number(process.env.S3_PORT ?? 0);
  const server = await startLocalS3Server({ port, storageDir: process.env.S3_STORAGE_DIR });
  process.stdout.write(`${JSON.stringify({ endpoint: server.endpoint })}\n`);
  const stop = () => {
    server.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
