// Backpressure on create: a per-key cap on queued+running generations (429) and a global cap
// on the queue (503), both answered with Retry-After. Applied in the create transaction
// (generation-intake.ts), but at READ COMMITTED concurrent transactions (other API processes) do
// not see each other's uncommitted rows, so under a burst a cap can be overshot by up to the
// number of creates racing at that instant. That is accepted: the caps are backpressure, not
// quotas, and serialising every create (a lock per key plus one global) would cost far more.
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
