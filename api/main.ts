// The API process (`node api/main.ts`): configuration from the environment, then startApi until
// SIGTERM or SIGINT. Only ever executed, never imported.
import { runService } from '../shared/service.ts';
import { loadApiConfig } from './config.ts';
import { startApi } from './start.ts';

await runService({
  name: 'easel api',
  loadConfig: () => loadApiConfig(),
  start: (config) => startApi(config),
});
