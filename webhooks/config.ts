// The webhook sender's configuration: read once at boot, validated, frozen and passed down.
import { z } from 'zod';
import { envInt, parseEnv, type S3Settings, s3SettingsFrom, sharedEnv } from '../shared/env.ts';
import { healthListenerEnv } from '../shared/health-server.ts';
import { parseRetrySchedule, webhookSenderEnv } from './policy.ts';

export const senderEnv = z.object({
  ...sharedEnv,
  ...webhookSenderEnv,
  /** Output URLs in webhook bodies are presigned for this long, like the API's. */
  RESULT_URL_TTL_SECONDS: envInt(60, 604_800).default(3600),
  S3_PUBLIC_ENDPOINT: z.url().optional(),
  /** Serves /metrics, /healthz and /readyz on HEALTH_PORT; unset, the sender listens on nothing. */
  ...healthListenerEnv,
  METRICS_PORT: envInt(0, 65_535)
    .optional()
    .describe("Deprecated: the sender's old name for `HEALTH_PORT`, still read when `HEALTH_PORT` is unset"),
  METRICS_HOST: z
    .string()
    .min(1)
    .optional()
    .describe("Deprecated: the sender's old name for `HEALTH_HOST`, still read when `HEALTH_HOST` is unset"),
});

/** An old variable name that was read, and the one to use instead. */
export interface DeprecatedSetting {
  variable: string;
  use: string;
}

export type SenderConfig = Readonly<z.infer<typeof senderEnv>> & {
  retrySchedule: readonly number[];
  /** Old names found in the environment; the sender warns about each once it has a logger. */
  deprecated: readonly DeprecatedSetting[];
};

const ALIASES = [
  { variable: 'METRICS_PORT', use: 'HEALTH_PORT' },
  { variable: 'METRICS_HOST', use: 'HEALTH_HOST' },
] as const;

export function loadSenderConfig(env: NodeJS.ProcessEnv = process.env): SenderConfig {
  const parsed = parseEnv(senderEnv, env);
  const deprecated = ALIASES.filter(({ variable }) => env[variable] !== undefined);
  // The new name wins when both are set; the old one still counts alone.
  const healthPort =
    env.HEALTH_PORT === undefined ? (parsed.METRICS_PORT ?? parsed.HEALTH_PORT) : parsed.HEALTH_PORT;
  const healthHost =
    env.HEALTH_HOST === undefined ? (parsed.METRICS_HOST ?? parsed.HEALTH_HOST) : parsed.HEALTH_HOST;
  return Object.freeze({
    ...parsed,
    HEALTH_PORT: healthPort,
    HEALTH_HOST: healthHost,
    retrySchedule: parseRetrySchedule(parsed.WEBHOOK_RETRY_SCHEDULE) ?? [0],
    deprecated: deprecated.map(({ variable, use }) => ({ variable, use })),
  });
}

/** Receivers fetch output URLs, so they are signed for the endpoint clients reach. */
export function senderS3Settings(config: SenderConfig): S3Settings {
  return { ...s3SettingsFrom(config), endpoint: config.S3_PUBLIC_ENDPOINT ?? config.S3_ENDPOINT };
}
