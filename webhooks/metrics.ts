// The webhook sender's Prometheus metrics: one count and one latency observation per delivery
// attempt, labelled with the attempt's outcome (the same word its log line carries as `outcome`).
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import { WEBHOOK_DELIVERY_OUTCOMES } from '../db/types.ts';
import type { AttemptOutcome } from './sender.ts';

/**
 * Every AttemptOutcome, so each series exists (at 0) from the first scrape and rate() sees its
 * first event. Skips (`skipped_disabled`: nothing sent) are not attempts and are not counted.
 */
export const ATTEMPT_OUTCOMES: readonly AttemptOutcome[] = WEBHOOK_DELIVERY_OUTCOMES.filter(
  (o): o is AttemptOutcome => o !== 'skipped_disabled',
);

// Up to the longest allowed timeout: most receivers answer in milliseconds, a stuck one at the timeout.
const DURATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export interface SenderMetrics {
  registry: Registry;
  observeAttempt(attempt: { kind: AttemptOutcome; latencyMs: number }): void;
}

export function createSenderMetrics(): SenderMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const attempts = new Counter({
    name: 'easel_webhook_attempts_total',
    help:
      'Webhook delivery attempts by outcome: delivered (2xx), retry (network error, timeout, 408, 429, 5xx; ' +
      'another attempt follows), exhausted (the same, with no attempt left), gone (410: the URL is disabled), ' +
      'rejected (another status: final), forbidden (SSRF guard: nothing sent).',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'easel_webhook_attempt_duration_seconds',
    help: 'Time from the start of an attempt to its outcome (response status, error or timeout), by outcome.',
    labelNames: ['outcome'] as const,
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  for (const outcome of ATTEMPT_OUTCOMES) attempts.inc({ outcome }, 0);
  return {
    registry,
    observeAttempt(result) {
      attempts.inc({ outcome: result.kind });
      duration.observe({ outcome: result.kind }, result.latencyMs / 1000);
    },
  };
}
