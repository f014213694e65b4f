// The webhook sender process (`node webhooks/main.ts`): configuration from the environment, then
// startWebhookSender until SIGTERM or SIGINT. Only ever executed, never imported. Any number may
// run side by side.
import { runService } from '../shared/service.ts';
import { loadSenderConfig } from './config.ts';
import { startWebhookSender } from './start.ts';

await runService({
  name: 'easel webhook sender',
  loadConfig: () => loadSenderConfig(),
  start: (config) => startWebhookSender(config),
});
