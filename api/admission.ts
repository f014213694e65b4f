// Backpressure on create: a per-key cap on queued+running generations (429) and a global cap
// on the queue (503), both answered with Retry-After; and per-key daily quotas (429
// quota_exceeded). Applied in the create transaction (generation-intake.ts) after the key's
// advisory lock (db/fair-queue.ts lockForCreate), so a key's creates in every API process see each
// other: the per-key cap and the quotas are exact. The global cap is not locked: at READ COMMITTED
// concurrent transactions of other keys do not see each other's uncommitted rows, so under a burst
// it can be overshot by up to the number of creates racing at that instant. That is accepted: it
// is backpressure, and one global lock would serialise every create of the fleet.
import type { QuotaDay } from '../db/quotas.repository.ts';
import type { ApiKey } from '../db/types.ts';
import type { ApiConfig } from './config.ts';
import {
  type ApiError,
  apiError,
  IN_FLIGHT_RETRY_AFTER_SECONDS,
  QUEUE_FULL_RETRY_AFTER_SECONDS,
} from './errors.ts';

export type AdmissionConfig = Pick<ApiConfig, 'MAX_IN_FLIGHT_PER_KEY' | 'MAX_QUEUED'>;

export function inFlightCap(apiKey: ApiKey, config: AdmissionConfig): number {
  return apiKey.max_in_flight ?? config.MAX_IN_FLIGHT_PER_KEY;
}

export function tooManyInFlight(cap: number): ApiError {
  return apiError(
    'too_many_in_flight',
    `This API key already has ${cap} generations queued or running, its limit; retry when one has finished.`,
    { headers: { 'Retry-After': String(IN_FLIGHT_RETRY_AFTER_SECONDS) } },
  );
}

export function queueFull(): ApiError {
  return apiError('queue_full', 'The generation queue is full; retry later.', {
    headers: { 'Retry-After': String(QUEUE_FULL_RETRY_AFTER_SECONDS) },
  });
}

/** Whether a key has a daily quota at all (most do not: their creates skip the quota read). */
export function hasQuota(apiKey: ApiKey): boolean {
  return apiKey.images_per_day !== null || apiKey.accelerator_seconds_per_day !== null;
}

/**
 * The quota check of one create, against today's use so far (which the caller advances for the
 * creates it admits). Exact at the boundary: a create may take the day's last image, and once the
 * accelerator time recorded today reaches the limit nothing more is accepted until 00:00 UTC.
 * Generations already accepted always run, even past the limit.
 */
export function quotaRefusal(
  apiKey: ApiKey,
  images: number,
  use: { images: number; acceleratorUs: number },
  day: Pick<QuotaDay, 'resetsAt' | 'now'>,
): ApiError | undefined {
  const retryAfter = String(Math.max(1, Math.ceil((day.resetsAt.getTime() - day.now.getTime()) / 1000)));
  const resetsAt = day.resetsAt.toISOString();
  const imageLimit = apiKey.images_per_day;
  if (imageLimit !== null && use.images + images > imageLimit) {
    return apiError(
      'quota_exceeded',
      `This API key may create ${imageLimit} images per UTC day; ${use.images} are used or on their way, ` +
        `and this request asks for ${images}. The count starts again at ${resetsAt}.`,
      {
        headers: { 'Retry-After': retryAfter },
        members: {
          quota: {
            limit: 'images_per_day',
            limit_value: imageLimit,
            used: use.images,
            requested: images,
            resets_at: resetsAt,
          },
        },
      },
    );
  }
  const secondsLimit = apiKey.accelerator_seconds_per_day;
  if (secondsLimit !== null && use.acceleratorUs >= secondsLimit * 1_000_000) {
    const used = Math.round(use.acceleratorUs / 1000) / 1000;
    return apiError(
      'quota_exceeded',
      `This API key may use ${secondsLimit} accelerator seconds per UTC day and has used ${used}. ` +
        `The count starts again at ${resetsAt}.`,
      {
        headers: { 'Retry-After': retryAfter },
        members: {
          quota: {
            limit: 'accelerator_seconds_per_day',
            limit_value: secondsLimit,
            used,
            resets_at: resetsAt,
          },
        },
      },
    );
  }
  return undefined;
}
