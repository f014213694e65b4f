// The API's configuration: read once at boot, validated, frozen and passed down.
import { z } from 'zod';
import { MODEL_ID_PATTERN } from '../db/queue.ts';
import { envInt, parseEnv, type S3Settings, s3SettingsFrom, sharedEnv } from '../shared/env.ts';
import { GENERATION_LIMITS } from '../shared/generation-contract.ts';
import { webhookPolicyEnv } from '../webhooks/policy.ts';

export const apiEnv = z.object({
  ...sharedEnv,
  PORT: envInt(0, 65_535).default(8080).describe('API port (`0` picks a free one)'),
  HOST: z.string().min(1).default('127.0.0.1').describe('API bind address (`0.0.0.0` in containers)'),
  // Up to the contract's largest image; the GPU's memory, not the schema, sets the real limit.
  MAX_PIXELS: envInt(4096, GENERATION_LIMITS.side.max ** 2)
    .default(1_048_576)
    .describe('Cap on `width × height` per image'),
  RESULT_URL_TTL_SECONDS: envInt(60, 604_800)
    .default(3600)
    .describe('Lifetime of presigned result URLs (in answers and in webhook bodies)'),
  S3_PUBLIC_ENDPOINT: z
    .url()
    .optional()
    .describe(
      'Endpoint put in presigned URLs, when clients reach storage by another name than the services do ' +
        '(docker compose); unset: `S3_ENDPOINT`',
    ),
  BODY_LIMIT_BYTES: envInt(1024, 10 * 1024 * 1024)
    .default(65_536)
    .describe('Request body cap (413 beyond it)'),
  MAX_IN_FLIGHT_PER_KEY: envInt(1, 1_000_000)
    .default(50)
    .describe(
      "Queued + running generations one API key may have (429 `too_many_in_flight` beyond it); a key's " +
        '`max_in_flight` (`easel keys set`) overrides it',
    ),
  MAX_QUEUED: envInt(1, 10_000_000)
    .default(10_000)
    .describe('Queued generations across all keys before creates are refused with 503 `queue_full`'),
  /** Checked at create for a webhook_url with a literal IP; the sender checks every resolved address. */
  ...webhookPolicyEnv,
  METRICS_TOKEN: z
    .string()
    .min(16, { error: 'must be at least 16 characters' })
    .optional()
    .describe(
      'When set (16+ characters), `GET /metrics` wants `Authorization: Bearer <it>`; unset, `/metrics` ' +
        'is open (bind `HOST` privately)',
    ),
  DEFAULT_MODEL: z
    .string()
    .regex(MODEL_ID_PATTERN, 'must be a model id (lowercase letters, digits, ".", "_" and "-")')
    .optional()
    .describe(
      'The model a request without `model` runs on; unset: the only model the fleet serves (with ' +
        'several, such a request gets 422 `model_required`)',
    ),
  MODEL_CACHE_SECONDS: envInt(0, 3600)
    .default(5)
    .describe(
      'How long the API keeps the models table in memory; a new or retired model takes effect within it ' +
        '(an unknown model id is looked up at once)',
    ),
  MAX_STREAMS_PER_KEY: envInt(1, 100_000)
    .default(20)
    .describe(
      'Event streams (`GET /v1/events`, `GET /v1/generations/{id}/events`) one API key may hold open on ' +
        'one API process (429 `too_many_streams` beyond it)',
    ),
  WORKER_STALE_SECONDS: envInt(1, 86_400)
    .default(30)
    .describe('A worker not heard from this long is not live (`GET /v1/workers`, `easel_workers_live`)'),
});

export type ApiConfig = Readonly<z.infer<typeof apiEnv>>;

/** Throws ConfigError (from shared/env.ts) naming every bad variable. */
export function loadApiConfig(env: NodeJS.ProcessEnv = process.env): ApiConfig {
  return parseEnv(apiEnv, env);
}

/** Settings for the store the API talks to itself (readiness checks). */
export function internalS3Settings(config: ApiConfig): S3Settings {
  return s3SettingsFrom(config);
}

/** Settings for the store that signs URLs clients will fetch. */
export function publicS3Settings(config: ApiConfig): S3Settings {
  return { ...s3SettingsFrom(config), endpoint: config.S3_PUBLIC_ENDPOINT ?? config.S3_ENDPOINT };
}
