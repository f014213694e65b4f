// The row → resource mapping, read by the API's handlers and by the webhook sender (whose event
// bodies carry the same resource): neither process loads the other's modules for it.
import type { QueueEstimateInputs } from '../db/generations.repository.ts';
import type { Generation } from '../db/types.ts';
import { queuedEta, runningEta } from './eta.ts';
import type { GenerationResource } from './generation.schemas.ts';
import type { ObjectStore } from './object-store.ts';

const iso = (value: Date | null) => (value === null ? null : value.toISOString());

const msBetween = (from: Date | null, to: Date | null) =>
  from === null || to === null ? undefined : Math.max(0, to.getTime() - from.getTime());

function etaOf(
  row: Generation,
  position: number | null,
  queue: QueueEstimateInputs | undefined,
  now: number,
): string | null {
  if (row.status === 'running') return runningEta(row, now);
  if (row.status === 'queued' && position !== null && queue) return queuedEta(position, queue, now);
  return null;
}

/**
 * The public resource; output URLs are presigned here, on every read, never stored. `position`
 * and `queue` (the queue estimate's inputs) matter only while the generation is queued.
 */
export async function toResource(
  row: Generation,
  store: ObjectStore,
  ttlSeconds: number,
  position: number | null,
  queue?: QueueEstimateInputs,
  now = Date.now(),
): Promise<GenerationResource> {
  const expiresAt = new Date(Date.now() + ttlSeconds * 1000).toISOString();
  const outputs = await Promise.all(
    [...row.outputs]
      .sort((a, b) => a.index - b.index)
      .map(async (o) => ({
        index: o.index,
        url: await store.presignGet(o.key, ttlSeconds),
        expires_at: expiresAt,
        width: o.width,
        height: o.height,
        content_type: o.content_type,
        bytes: o.bytes,
        sha256: o.sha256,
      })),
  );
  return {
    id: row.id,
    object: 'generation',
    status: row.status,
    model: row.model,
    prompt: row.prompt,
    negative_prompt: row.negative_prompt,
    prompt_en: row.prompt_en,
    translated: row.translated,
    negative_prompt_en: row.negative_prompt_en,
    width: row.width,
    height: row.height,
    steps: row.steps,
    guidance_scale: row.guidance_scale,
    seed: row.seed,
    num_images: row.num_images,
    scheduler: row.scheduler,
    requested_scheduler: row.requested_scheduler as GenerationResource['requested_scheduler'],
    karras: row.requested_karras,
    queue_position: row.status === 'queued' ? position : null,
    live_workers: row.status === 'queued' && queue ? queue.workers : null,
    progress:
      row.status === 'queued' || row.progress_step === null || row.progress_total === null
        ? null
        : { step: row.progress_step, total: row.progress_total },
    eta: etaOf(row, row.status === 'queued' ? position : null, queue, now),
    cancel_requested: row.cancel_requested_at !== null,
    outputs,
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    attempts: row.attempts,
    prompt_truncated: row.prompt_truncated,
    timings: {
      ...row.timings,
      queued_ms: msBetween(row.created_at, row.started_at),
      run_ms: msBetween(row.started_at, row.finished_at),
    },
    created_at: row.created_at.toISOString(),
    started_at: iso(row.started_at),
    finished_at: iso(row.finished_at),
  };
}
