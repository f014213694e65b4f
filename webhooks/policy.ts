// Webhook settings read by the API (the create-time URL check) and by the webhook sender.
import { z } from 'zod';
import { envBoolean } from '../shared/env.ts';
import { parseAllowedHosts, type WebhookTargetPolicy } from './ssrf.ts';

/** Standard Webhooks' schedule: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h. */
export const DEFAULT_RETRY_SCHEDULE = '0,5,300,1800,7200,18000,36000,50400,72000,86400';

export const webhookPolicyEnv = {
  WEBHOOK_ALLOW_PRIVATE: envBoolean
    .default(false)
    .describe('Allow loopback, private and link-local webhook targets (local use and tests only)'),
  WEBHOOK_ALLOWED_HOSTS: z
    .string()
    .default('')
    .describe('Comma-separated hostnames, IP addresses or CIDR ranges allowed despite the address rules'),
};

export const webhookSenderEnv = {
  ...webhookPolicyEnv,
  WEBHOOK_TIMEOUT_SECONDS: z.coerce
    .number()
    .min(0.1)
    .max(120)
    .default(10)
    .describe('Timeout of one delivery attempt (connect + response), seconds'),
  WEBHOOK_RETRY_SCHEDULE: z
    .string()
    .default(DEFAULT_RETRY_SCHEDULE)
    .refine((v) => parseRetrySchedule(v) !== undefined, {
      message: 'must be comma-separated non-negative numbers of seconds',
    })
    .describe('Delays in seconds before each attempt, the first usually 0; its length is the attempt limit'),
  WEBHOOK_CONCURRENCY: z.coerce
    .number()
    .int()
    .min(1)
    .max(256)
    .default(8)
    .describe('Deliveries one sender process makes at once'),
  WEBHOOK_RECOVERY_SECONDS: z.coerce
    .number()
    .int()
    .min(1)
    .max(3600)
    .default(30)
    .describe('How often a sender looks for deliveries a crashed sender left unfinished, seconds'),
};

export function parseRetrySchedule(value: string): number[] | undefined {
  const parts = value.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) return undefined;
  const numbers = parts.map(Number);
  return numbers.every((n) => Number.isFinite(n) && n >= 0) ? numbers : undefined;
}

export function policyFrom(env: {
  WEBHOOK_ALLOW_PRIVATE: boolean;
  WEBHOOK_ALLOWED_HOSTS: string;
}): WebhookTargetPolicy {
  return {
    allowPrivate: env.WEBHOOK_ALLOW_PRIVATE,
    allowedHosts: parseAllowedHosts(env.WEBHOOK_ALLOWED_HOSTS),
  };
}
