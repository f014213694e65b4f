// Standard Webhooks signing (https://www.standardwebhooks.com) with the specification's own
// library: the signed content is "{webhook-id}.{webhook-timestamp}.{body}", HMAC-SHA256 keyed by
// the base64-decoded part of the `whsec_` secret, sent as `v1,<base64>`. The library signs one
// secret at a time; during a rotation each secret's signature is sent, separated by spaces.
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

export const SECRET_PREFIX = 'whsec_';

/**
 * A fresh `whsec_` secret of 32 random bytes. API keys get theirs from the database on insert
 * (migration 0005, the same shape); this one is for tests and tools.
 */
export function generateWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

/** `v1,<base64 HMAC-SHA256>` of one attempt, for one secret; `timestamp` in unix seconds. */
export function signature(secret: string, id: string, timestamp: number, body: string): string {
  return new Webhook(secret).sign(id, new Date(timestamp * 1000), body);
}

/** The three Standard Webhooks headers; one signature per secret (current first). */
export function webhookHeaders(
  secrets: readonly string[],
  id: string,
  timestamp: number,
  body: string,
): Record<string, string> {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': secrets.map((s) => signature(s, id, timestamp, body)).join(' '),
  };
}
