// The GPU worker process (`node gpu-worker/main.ts`), one per accelerator: configuration from the
// environment, then startWorker until SIGTERM or SIGINT. Only ever executed, never imported.
import { runService } from '../shared/service.ts';
import { loadWorkerConfig } from './config.ts';
import { startWorker } from './start.ts';

await runService({
  name: 'easel worker',
  loadConfig: () => loadWorkerConfig(),
  start: (config) => startWorker(config),
});
