// Estimated completion times for the resource's `eta`. Estimates only: they assume the
// measured step time holds, and that queued work resembles recent work.

import type { QueueEstimateInputs } from '../db/generations.repository.ts';
import type { Generation } from '../db/types.ts';

/** Running: the remaining denoising steps at the attempt's moving-average step time. */
export function runningEta(
  row: Pick<Generation, 'progress_step' | 'progress_total' | 'step_ms'>,
  now: number,
): string | null {
  const { progress_step: step, progress_total: total, step_ms: stepMs } = row;
  if (step === null || total === null || stepMs === null) return null;
  return new Date(now + Math.max(0, total - step) * stepMs).toISOString();
}

/**
 * Queued: this generation and the ones ahead of it, at the model's recent average run time,
 * shared among its live workers. Null without any succeeded generation to average, and while no
 * worker of the model is live (nothing says when one will start).
 */
export function queuedEta(position: number, inputs: QueueEstimateInputs, now: number): string | null {
  if (inputs.avgRunMs === null || inputs.workers === 0) return null;
  const workers = inputs.workers;
  return new Date(now + ((position + 1) * inputs.avgRunMs) / workers).toISOString();
}
