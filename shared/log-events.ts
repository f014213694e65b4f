// The log lines other code waits on: the launcher and the test harness wait for a service's ready
// line, tests and benchmarks for a generation's or a webhook's. Each is the `msg` of a JSON log
// line (pino); the code that logs it and the code that waits for it both use the name here, so a
// reworded message cannot silently leave a waiter hanging. Lines nobody waits on stay inline.
export { LISTEN_CONNECTION_READY } from '../db/listen-connection.ts';

// The API process (api/start.ts). `api listening` carries `url`.
export const API_LISTENING = 'api listening';
export const API_FAILED_TO_START = 'api failed to start';
export const API_STOPPING = 'api stopping';
export const API_STOPPED = 'api stopped';

// The API serving requests.
/** The access line of every request: `method`, `path`, `status`, `duration_ms`. */
export const REQUEST = 'request';
export const UNHANDLED_ERROR = 'unhandled error';
export const GENERATION_QUEUED = 'generation queued';
export const GENERATION_REPLAYED = 'generation replayed for its idempotency key';
export const QUEUED_GENERATION_CANCELED = 'queued generation canceled';
/** A create or read held open by `Prefer: wait`: `wait_s`. */
export const WAITING_FOR_GENERATION = 'waiting for generation';
export const METRICS_QUERY_FAILED = 'metrics query failed';

// The GPU worker process (gpu-worker/start.ts). `worker ready` carries `model` and `worker_id`.
export const WORKER_HEALTH_LISTENING = 'worker health listening';
export const WORKER_READY = 'worker ready';
export const WORKER_FAILED_TO_START = 'worker failed to start';
export const WORKER_STOPPING = 'worker stopping';
export const WORKER_STOPPED = 'worker stopped';

// One generation on a worker; every line carries `generation_id` (and the worker's `worker_id`).
export const GENERATION_STARTED = 'generation started';
export const GENERATION_SUCCEEDED = 'generation succeeded';
export const GENERATION_FAILED = 'generation failed';
export const GENERATION_CANCELED = 'generation canceled';
export const GENERATION_ATTEMPT_FAILED = 'generation attempt failed; will retry';
/** The claim found the row canceled, finished or gone: the job is settled without running. */
export const GENERATION_SKIPPED = 'generation no longer runnable (canceled, finished or deleted); skipping';

// The webhook sender process (webhooks/start.ts). `webhook sender ready` carries `metrics_url`.
export const WEBHOOK_SENDER_READY = 'webhook sender ready';
export const WEBHOOK_SENDER_FAILED_TO_START = 'webhook sender failed to start';
export const WEBHOOK_SENDER_STOPPING = 'webhook sender stopping';
export const WEBHOOK_SENDER_STOPPED = 'webhook sender stopped';

// One webhook event; every line carries `webhook_id`, `attempt` and `generation_id`.
export const WEBHOOK_DELIVERED = 'webhook delivered';
export const WEBHOOK_ATTEMPT_FAILED = 'webhook attempt failed';
export const WEBHOOK_URL_DISABLED = 'webhook URL disabled';
export const WEBHOOK_SKIPPED_DISABLED = 'webhook skipped: URL disabled';

/** A setting read under an old name (`variable`, `use`): it still works, for now. */
export const DEPRECATED_SETTING = 'deprecated setting';
