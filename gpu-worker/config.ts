import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import type { QueuePolicy } from '../db/queue.ts';
import { envBoolean, envInt, parseEnv, sharedEnv } from '../shared/env.ts';

const schema = z.object({
  ...sharedEnv,
  /** A diffusers/optimum ONNX folder; unset means the demo model built under EASEL_DATA_DIR. */
  MODEL_DIR: z.string().min(1).optional(),
  EASEL_DATA_DIR: z.string().min(1).default('.easel'),
  EXECUTION_PROVIDER: z.enum(['cpu', 'cuda']).default('cpu'),
  /** A Marian ru→en export (transformers.js layout); unset: the demo translator with the demo model. */
  TRANSLATOR_DIR: z.string().min(1).optional(),
  TRANSLATION_MODE: z.enum(['auto', 'always', 'off']).default('auto'),
  WORKER_ID: z.string().min(1).default(`${hostname()}-${process.pid}`),
  JOB_TIMEOUT_SECONDS: envInt(1, 86_400).default(600),
  JOB_RETRY_LIMIT: envInt(0, 20).default(3),
  JOB_RETRY_DELAY_SECONDS: envInt(1, 3600).default(2),
  JOB_RETRY_DELAY_MAX_SECONDS: envInt(1, 86_400).default(60),
  HEARTBEAT_SECONDS: envInt(10, 3600).default(10),
  /**
   * How often this worker's pg-boss supervisor looks for jobs whose worker stopped heartbeating
   * (or that expired) and hands them back, and how often this worker records generations whose
   * job pg-boss ended; pg-boss's own default is 60 s. Claimed fleet-wide per interval, so more
   * workers do not mean more passes. 2 s keeps a dead worker's job back on another one within
   * heartbeat + 10 s at the defaults.
   */
  QUEUE_MONITOR_SECONDS: envInt(1, 600).default(2),
  /**
   * Backstop poll of an idle worker. New jobs wake it at once through LISTEN/NOTIFY; the poll only
   * finds retries whose backoff ended (they send no NOTIFY) and jobs whose wake-up was lost.
   */
  QUEUE_POLL_SECONDS: envInt(1, 3600).default(2),
  SHUTDOWN_GRACE_SECONDS: envInt(0, 3600).default(30),
  /**
   * Take (and prepare) the next job this long before the current denoise is expected to end, so
   * the accelerator never waits for a fetch or a translation; 0 takes it only once the GPU is free.
   */
  PREFETCH_LEAD_MS: envInt(0, 600_000).default(1000),
  /** Finished jobs whose JPEG/upload/record may run alongside the next denoise. */
  MAX_PENDING_UPLOADS: envInt(1, 16).default(2),
  WARMUP: envBoolean.default(true),
  WARMUP_SIZE: envInt(64, 2048)
    .refine((n) => n % 8 === 0, 'must be a multiple of 8')
    .default(512),
  /** Port for /healthz and /readyz; unset = no HTTP listener (one worker per GPU shares a box). */
  HEALTH_PORT: envInt(0, 65_535).optional(),
  HEALTH_HOST: z.string().default('127.0.0.1'),
});

export type WorkerEnv = z.infer<typeof schema>;

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
