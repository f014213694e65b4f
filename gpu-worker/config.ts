import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_QUEUE_POLICY, MODEL_ID_PATTERN, type QueuePolicy } from '../db/queue.ts';
import { envBoolean, envInt, parseEnv, sharedEnv } from '../shared/env.ts';
import { healthListenerEnv } from '../shared/health-server.ts';

// The queue policy's defaults are db/queue.ts's, the ones a producer creates the queue with.
const policy = DEFAULT_QUEUE_POLICY;

const schema = z.object({
  ...sharedEnv,
  MODEL_DIR: z
    .string()
    .min(1)
    .optional()
    .describe('diffusers/optimum ONNX model folder; unset: the demo model, built under `EASEL_DATA_DIR`'),
  MODEL_ID: z
    .string()
    .regex(
      MODEL_ID_PATTERN,
      'lowercase letters, digits, ".", "_" and "-", starting with a letter or digit (64 at most)',
    )
    .optional()
    .describe(
      "The id clients name this worker's model by (`model` in a request) and its queue's name; unset: " +
        "`id` in the folder's easel-model.json, else the folder's name (the demo model: `demo`)",
    ),
  EASEL_DATA_DIR: z
    .string()
    .min(1)
    .default('.easel')
    .describe('Local data: embedded Postgres, local S3, the demo models, the local API key'),
  EXECUTION_PROVIDER: z
    .enum(['cpu', 'cuda'])
    .default('cpu')
    .describe('ONNX Runtime execution provider: `cpu` or `cuda` (see GPU install)'),
  TRANSLATOR_DIR: z
    .string()
    .min(1)
    .optional()
    .describe(
      'Marian ru→en export (transformers.js layout); unset: the demo translator with the demo model, ' +
        'no translation with a real model',
    ),
  TRANSLATION_MODE: z
    .enum(['auto', 'always', 'off'])
    .default('auto')
    .describe('Which prompts are translated to English: `auto` (those with Cyrillic), `always` or `off`'),
  WORKER_ID: z
    .string()
    .min(1)
    .default(`${hostname()}-${process.pid}`)
    .describe('Name of this worker in logs, health and `GET /v1/workers`'),
  JOB_TIMEOUT_SECONDS: envInt(1, 86_400)
    .default(policy.expireInSeconds)
    .describe('A job running longer is aborted between steps and retried'),
  JOB_RETRY_LIMIT: envInt(0, 20)
    .default(policy.retryLimit)
    .describe('Retries of transient failures before the generation fails'),
  JOB_RETRY_DELAY_SECONDS: envInt(1, 3600)
    .default(policy.retryDelaySeconds)
    .describe('First delay of the exponential backoff between retries'),
  JOB_RETRY_DELAY_MAX_SECONDS: envInt(1, 86_400)
    .default(policy.retryDelayMaxSeconds)
    .describe('Longest delay of the exponential backoff between retries'),
  HEARTBEAT_SECONDS: envInt(10, 3600)
    .default(policy.heartbeatSeconds)
    .describe('A worker silent this long (crashed) has its jobs retried'),
  QUEUE_MONITOR_SECONDS: envInt(1, 600)
    .default(1)
    .describe(
      "How often the fleet's pg-boss supervisor (claimed by one worker per interval, so more workers do " +
        'not mean more passes) hands back jobs of dead workers and expired jobs, and how often each ' +
        "worker's reconciler records generations whose job pg-boss ended. pg-boss's own default is 60 s; " +
        "1 s keeps a dead worker's job back on another within heartbeat + 10 s (fault suite: p90 about heartbeat + 2.4 s)",
    ),
  QUEUE_POLL_SECONDS: envInt(1, 3600)
    .default(2)
    .describe(
      'Backstop poll of an idle worker; new jobs wake it at once through LISTEN/NOTIFY, the poll finds ' +
        'retries whose backoff ended (they send no NOTIFY) and jobs whose wake-up was lost',
    ),
  SHUTDOWN_GRACE_SECONDS: envInt(0, 3600)
    .default(30)
    .describe('On SIGTERM, time the jobs in hand get to finish before they are handed back'),
  PREFETCH_LEAD_MS: envInt(0, 600_000)
    .default(1000)
    .describe(
      'Take and prepare (read, translate) the next job this long before the current denoise is expected ' +
        'to end, so the accelerator never waits for a fetch; `0`: only once the GPU is free',
    ),
  MAX_PENDING_UPLOADS: envInt(1, 16)
    .default(2)
    .describe(
      'Finished jobs whose JPEG/upload/record may run alongside the next denoise before it waits ' +
        '(bounds memory when S3 is slow)',
    ),
  WARMUP: envBoolean.default(true).describe('Run a warm-up generation before the worker reports ready'),
  WARMUP_SIZE: envInt(64, 2048)
    .refine((n) => n % 8 === 0, 'must be a multiple of 8')
    .default(512)
    .describe('Width and height of the warm-up image'),
  /** /healthz, /readyz and /metrics; HEALTH_PORT unset = no HTTP listener (one worker per GPU shares a box). */
  ...healthListenerEnv,
});

export type WorkerEnv = z.infer<typeof schema>;
/** For the README's table (test/env-table.ts). */
export { schema as workerEnv };

export interface WorkerConfig {
  env: Readonly<WorkerEnv>;
  modelDir: string | undefined;
  demoModelDir: string;
  /** Where the translator comes from; undefined when translation is off or unavailable. */
  translatorDir: string | undefined;
  demoTranslatorDir: string;
  queuePolicy: QueuePolicy;
}

export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const parsed = parseEnv(schema, env);
  return Object.freeze({
    env: parsed,
    modelDir: parsed.MODEL_DIR ? resolve(parsed.MODEL_DIR) : undefined,
    demoModelDir: resolve(parsed.EASEL_DATA_DIR, 'models', 'demo'),
    translatorDir: translatorDirFor(parsed),
    demoTranslatorDir: resolve(parsed.EASEL_DATA_DIR, 'models', 'demo-translator'),
    queuePolicy: Object.freeze({
      expireInSeconds: parsed.JOB_TIMEOUT_SECONDS,
      retryLimit: parsed.JOB_RETRY_LIMIT,
      retryDelaySeconds: parsed.JOB_RETRY_DELAY_SECONDS,
      retryDelayMaxSeconds: parsed.JOB_RETRY_DELAY_MAX_SECONDS,
      heartbeatSeconds: parsed.HEARTBEAT_SECONDS,
    }),
  });
}

/**
 * The demo translator only pairs with the demo model: next to real weights its (random) output
 * would silently replace real prompts, so a real model without TRANSLATOR_DIR runs untranslated.
 */
function translatorDirFor(env: WorkerEnv): string | undefined {
  if (env.TRANSLATION_MODE === 'off') return undefined;
  if (env.TRANSLATOR_DIR) return resolve(env.TRANSLATOR_DIR);
  if (!env.MODEL_DIR) return resolve(env.EASEL_DATA_DIR, 'models', 'demo-translator');
  return undefined;
}
