// Runs one generation job: claim the row, denoise, encode, upload, record. Permanent failures
// end the generation at once; transient ones are handed back to pg-boss for a retry; a client's
// cancel stops the denoising loop at its next step and ends the generation as canceled.
import type { JobWithMetadata, PgBoss } from 'pg-boss';
import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import {
  markCanceled,
  markFailed,
  markRequeued,
  markRunning,
  markSucceeded,
  recordProgress,
  recordTranslation,
} from '../db/generations.repository.ts';
import { type ObjectStore, outputKey } from '../db/object-store.ts';
import { generationJob } from '../db/queue.ts';
import type { StoredOutput } from '../db/types.ts';
import { withWebhookEvent } from '../db/webhooks.repository.ts';
import type { CancelWatcher } from './cancel-listener.ts';
import { CancelAbort, classifyFailure, JobTimeoutAbort, ShutdownAbort } from './failure.ts';
import { encodeJpeg } from './jpeg.ts';
import type { SchedulerChoice, TextToImage } from './models/text-to-image.ts';
import { type TranslationMode, type Translator, translatePrompt } from './models/translator.ts';
import { createProgressReporter } from './progress.ts';

export type JobOutcome = 'succeeded' | 'failed' | 'canceled' | 'skipped' | 'retry';

export interface HandlerDeps {
  db: Db;
  store: ObjectStore;
  model: TextToImage;
  translator: Translator | undefined;
  translationMode: TranslationMode;
  logger: Logger;
  /** Fires when a shutdown's grace period runs out: the job goes back to the queue. */
  shutdownSignal: AbortSignal;
  /** Lets health/metrics see which generation is on the accelerator. */
  onActive?: (generationId: string | undefined) => void;
  /** Delivers cancel requests for the running generation (absent: only the row checks see them). */
  cancels?: CancelWatcher;
  /** Recorded on the row: which worker ran the attempt. */
  workerId?: string;
  /** Queues webhook events in the transaction of each status change (absent: the sender's sweep does). */
  boss?: PgBoss;
}

const JPEG_CONTENT_TYPE = 'image/jpeg';

export function createGenerationHandler(deps: HandlerDeps) {
  const { db, store, model, shutdownSignal } = deps;

  return async function handleGenerationJob(job: JobWithMetadata<unknown>): Promise<JobOutcome> {
    const parsed = generationJob.safeParse(job.data);
    if (!parsed.success) {
      // A payload we cannot read will never become readable: drop it loudly rather than retry.
      deps.logger.error({ job_id: job.id, issues: parsed.error.issues }, 'unreadable generation job payload');
      return 'skipped';
    }
    const id = parsed.data.generation_id;
    const logger = deps.logger.child({ generation_id: id, job_id: job.id, attempt: job.retryCount + 1 });

    // Watched before the claim, so a cancel sent right after it is not missed.
    const cancel = new AbortController();
    const requestCancel = () => cancel.abort(new CancelAbort('the generation was canceled'));
    const unwatch = deps.cancels?.watch(id, requestCancel);
    const generation = await withWebhookEvent(db, deps.boss, (trx) =>
      markRunning(trx, id, deps.workerId ?? null),
    ).catch((error: unknown) => {
      unwatch?.();
      throw error;
    });
    if (!generation) {
      unwatch?.();
      // A cancel requested while it ran on a worker that then died (or before a retry) ends here.
      if (await withWebhookEvent(db, deps.boss, (trx) => markCanceled(trx, id))) {
        logger.info({ steps_done: 0 }, 'generation canceled');
        return 'canceled';
      }
      logger.info('generation no longer runnable (canceled, finished or deleted); skipping');
      return 'skipped';
    }
    deps.onActive?.(id);
    logger.info(
      { steps: generation.steps, width: generation.width, height: generation.height },
      'generation started',
    );
    const progress = createProgressReporter({
      async write(record) {
        const state = await recordProgress(db, id, record);
        if (state?.cancelRequested) requestCancel();
      },
      onError: (error) => logger.warn({ err: error }, 'progress write failed'),
    });
    const signal = AbortSignal.any([job.signal, shutdownSignal, cancel.signal]);
    try {
      // Russian prompts become English before tokenization (CLIP's vocabulary is English).
      const [prompt, negative] = await Promise.all([
        translatePrompt(deps.translator, generation.prompt, deps.translationMode),
        translatePrompt(deps.translator, generation.negative_prompt, deps.translationMode),
      ]);
      if (prompt.translated || negative.translated) {
        await recordTranslation(db, id, prompt.promptEn, negative.promptEn);
      }
      signal.throwIfAborted();
      const result = await model.generate({
        prompt: prompt.promptEn,
        negativePrompt: negative.promptEn,
        width: generation.width,
        height: generation.height,
        steps: generation.steps,
        guidanceScale: generation.guidance_scale,
        seed: generation.seed,
        numImages: generation.num_images,
        scheduler: (generation.requested_scheduler as SchedulerChoice | null) ?? undefined,
        karras: generation.requested_karras ?? undefined,
        signal,
        onStep: progress.step,
      });
      await progress.flush();
      // A cancel can still drop images that were never stored; once stored, they are kept.
      cancel.signal.throwIfAborted();

      const jpegStart = performance.now();
      const jpegs = await Promise.all(result.images.map((image) => encodeJpeg(image)));
      const jpegMs = performance.now() - jpegStart;

      const uploadStart = performance.now();
      const outputs: StoredOutput[] = await Promise.all(
        jpegs.map(async (jpeg, index) => {
          const key = outputKey(id, index);
          const put = await store.put(key, jpeg, JPEG_CONTENT_TYPE);
          const image = result.images[index];
          return {
            index,
            key,
            width: image?.width ?? generation.width,
            height: image?.height ?? generation.height,
            content_type: JPEG_CONTENT_TYPE,
            bytes: put.bytes,
            sha256: put.sha256,
          };
        }),
      );
      const uploadMs = performance.now() - uploadStart;

      const timings = {
        translate_ms: round(prompt.ms + negative.ms),
        encode_ms: round(result.timings.encodeMs),
        denoise_ms: round(result.timings.denoiseMs),
        decode_ms: round(result.timings.decodeMs),
        jpeg_ms: round(jpegMs),
        upload_ms: round(uploadMs),
      };
      const recorded = await withWebhookEvent(db, deps.boss, (trx) =>
        markSucceeded(trx, id, {
          promptEn: prompt.promptEn,
          negativePromptEn: negative.promptEn,
          outputs,
          timings,
          scheduler: result.scheduler,
          promptTruncated: result.promptTruncated,
        }),
      );
      if (!recorded) logger.warn('generation changed state while running; result kept in storage only');
      logger.info({ timings }, 'generation succeeded');
      return 'succeeded';
    } catch (error) {
      // The last step reached is what the row shows (and what the log reports).
      await progress.flush();
      if (cancel.signal.aborted) {
        if (!(await withWebhookEvent(db, deps.boss, (trx) => markCanceled(trx, id))))
          logger.warn('generation changed state while canceling');
        logger.info(
          { steps_done: progress.stepsDone, steps_total: progress.total ?? null },
          'generation canceled',
        );
        return 'canceled';
      }
      const cause = job.signal.aborted
        ? new JobTimeoutAbort(`job exceeded its timeout of ${job.expireInSeconds} s`, { cause: error })
        : shutdownSignal.aborted
          ? new ShutdownAbort('worker shut down before the job finished', { cause: error })
          : error;
      const failure = classifyFailure(cause);
      const lastAttempt = job.retryCount >= job.retryLimit;
      if (failure.permanent || lastAttempt) {
        await withWebhookEvent(db, deps.boss, (trx) => markFailed(trx, id, failure));
        logger.error({ err: error, code: failure.code, permanent: failure.permanent }, 'generation failed');
        if (failure.permanent) return 'failed';
        throw cause;
      }
      // Retried later by pg-boss: show it as waiting again rather than stuck in 'running'.
      await markRequeued(db, id);
      logger.warn({ err: error, code: failure.code }, 'generation attempt failed; will retry');
      throw cause;
    } finally {
      unwatch?.();
      deps.onActive?.(undefined);
    }
  };
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
