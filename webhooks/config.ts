// The webhook sender's configuration: read once at boot, validated, frozen and passed down.
import { z } from 'zod';
import { envInt, parseEnv, type S3Settings, s3SettingsFrom, sharedEnv } from '../shared/env.ts';
import { parseRetrySchedule, webhookSenderEnv } from './policy.ts';

export const senderEnv = z.object({
  ...sharedEnv,
  ...webhookSenderEnv,
  /** Output URLs in webhook bodies are presigned for this long, like the API's. */
  RESULT_URL_TTL_SECONDS: envInt(60, 604_800).default(3600),
  S3_PUBLIC_ENDPOINT: z.url().optional(),
  /** Serves /metrics, /healthz and /readyz on this port; unset, the sender listens on nothing. */
  METRICS_PORT: envInt(0, 65_535).optional(),
  METRICS_HOST: z.string().min(1).default('127.0.0.1'),
});

export type SenderConfig = Readonly<z.infer<typeof senderEnv>> & { retrySchedule: readonly number[] };

export function loadSenderConfig(env: NodeJS.ProcessEnv = process.env): SenderConfig {
  const parsed = parseEnv(senderEnv, env);
  return Object.freeze({
    ...parsed,
    retrySchedule: parseRetrySchedule(parsed.WEBHOOK_RETRY_SCHEDULE) ?? [0],
  });
}

/** Receivers fetch output URLs, so they are signed for the endpoint clients reach. */
export function senderS3Settings(config: SenderConfig): S3Settings {
  return { ...s3SettingsFrom(config), endpoint: config.S3_PUBLIC_ENDPOINT ?? config.S3_ENDPOINT };
}
