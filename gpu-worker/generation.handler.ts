// One generation job in three stages, so the queue loop can overlap them across jobs:
//   prepare (CPU, ahead of time): read the row, translate the prompt;
//   denoise (the accelerator, one job at a time): claim the row, encode, denoise, decode;
//   finish  (CPU, while the next job denoises): JPEG, upload, record the result.
// Permanent failures end the generation at once; transient ones go back to pg-boss for a retry;
// a client's cancel stops the denoising loop at its next step and ends the generation as canceled.
import type { PgBoss } from 'pg-boss';
import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import {
  findGeneration,
  markCanceled,
  markFailed,
  markRequeued,
  markRunning,
  markSucceeded,
  recordProgress,
  recordTranslation,
} from '../db/generations.repository.ts';
import { generationJob } from '../db/queue.ts';
import type { Generation, StageTimingsRecord, StoredOutput, UsageOutcome } from '../db/types.ts';
import { TERMINAL_STATUSES } from '../db/types.ts';
import { recordUsage } from '../db/usage.repository.ts';
import { wantsWebhookEvent, withWebhookEvent } from '../db/webhooks.repository.ts';
import {
  GENERATION_ATTEMPT_FAILED,
  GENERATION_CANCELED,
  GENERATION_FAILED,
  GENERATION_SKIPPED,
  GENERATION_STARTED,
  GENERATION_SUCCEEDED,
} from '../shared/log-events.ts';
import { type ObjectStore, outputKey } from '../shared/object-store.ts';
import type { CancelWatcher } from './cancel-listener.ts';
import { CancelAbort, classifyFailure, type Failure, JobTimeoutAbort, ShutdownAbort } from './failure.ts';
import { encodeJpeg } from './jpeg.ts';
import type { GenerateResult, SchedulerChoice, TextToImage } from './models/text-to-image.ts';
import {
  type TranslatedPrompt,
  type TranslationMode,
  type Translator,
  translatePrompt,
} from './models/translator.ts';
import { createProgressReporter, type ProgressReporter } from './progress.ts';

export type JobOutcome = 'succeeded' | 'failed' | 'canceled' | 'skipped' | 'retry';

/** A job as the queue loop holds it: pg-boss's attempt, with the loop's own timeout signal. */
export interface HeldJob {
  id: string;
  data: unknown;
  retryCount: number;
  retryLimit: number;
  expireInSeconds: number;
  /** Fires when the attempt outlives its timeout. */
  signal: AbortSignal;
}

/**
 * How an attempt ends. With `error` the queue job is failed (pg-boss retries it if attempts
 * remain); without, it is completed.
 */
export interface Settlement {
  outcome: JobOutcome;
  error?: Failure;
  /** Why it failed (also for permanent failures, which carry no `error`): for metrics. */
  code?: string;
  /** A success's stage timings and step count: for metrics. */
  timings?: StageTimingsRecord;
  steps?: number;
}

interface JobContext {
  job: HeldJob;
  id: string;
  logger: Logger;
  cancel: AbortController;
  /** Any reason to stop: timeout, shutdown past its grace, or the client's cancel. */
  signal: AbortSignal;
  unwatch?: () => void;
  progress?: ProgressReporter;
  /** Set once a claimed attempt's model run has ended: what the usage ledger records for it. */
  run?: AcceleratorRun;
}

/** One attempt's run on the accelerator, measured once for the ledger, the log and the metric. */
interface AcceleratorRun {
  /** The row as the claim left it: its `attempts` is this attempt's number. */
  generation: Generation;
  /** From just before model.generate until it returned or threw, in whole microseconds. */
  acceleratorUs: number;
  /** Whether onAcceleratorUsage has been told (once per attempt, whatever path settles it). */
  metered: boolean;
}

export interface PreparedJob {
  ctx: JobContext;
  generation: Generation;
  prompt: TranslatedPrompt;
  negative: TranslatedPrompt;
}

export interface DenoisedJob extends PreparedJob {
  result: GenerateResult;
  /** When the accelerator started and finished this job (performance.now() clock). */
  acceleratorStart: number;
  acceleratorEnd: number;
}

export interface HandlerDeps {
  db: Db;
  store: ObjectStore;
  model: TextToImage;
  translator: Translator | undefined;
  translationMode: TranslationMode;
  /** Prompt languages the model reads natively (its `languages` capability): those are not translated. */
  languages?: readonly string[];
  logger: Logger;
  /** Fires when a shutdown's grace period runs out: jobs in hand go back to the queue. */
  shutdownSignal: AbortSignal;
  /** Lets health/metrics see which generation is on the accelerator. */
  onActive?: (generationId: string | undefined) => void;
  /** Delivers cancel requests for running generations (absent: only the row checks see them). */
  cancels?: CancelWatcher;
  /** Recorded on the row: which worker ran the attempt. */
  workerId?: string;
  /** Queues webhook events in the transaction of each status change (absent: the sender's sweep does). */
  boss?: PgBoss;
  /**
   * Told once per attempt that ran on the accelerator, with the microseconds its usage record
   * holds (`model`: the generation's; null for rows from before models existed).
   */
  onAcceleratorUsage?: (model: string | null, acceleratorUs: number) => void;
}

export interface GenerationStages {
  prepare(job: HeldJob): Promise<PreparedJob | Settlement>;
  denoise(prepared: PreparedJob): Promise<DenoisedJob | Settlement>;
  finish(denoised: DenoisedJob): Promise<Settlement>;
}

const JPEG_CONTENT_TYPE = 'image/jpeg';

export function isSettlement<T extends object>(value: T | Settlement): value is Settlement {
  return 'outcome' in value;
}

export function createGenerationStages(deps: HandlerDeps): GenerationStages {
  const { db, store, model, shutdownSignal } = deps;

  function contextFor(job: HeldJob, id: string): JobContext {
    const cancel = new AbortController();
    return {
      job,
      id,
      logger: deps.logger.child({ generation_id: id, job_id: job.id, attempt: job.retryCount + 1 }),
      cancel,
      signal: AbortSignal.any([job.signal, shutdownSignal, cancel.signal]),
    };
  }

  async function cancelOrSkip(ctx: JobContext): Promise<Settlement> {
    // A cancel requested while it ran on a worker that then died (or before a retry) ends here.
    if (await withWebhookEvent(db, deps.boss, (trx) => markCanceled(trx, ctx.id))) {
      ctx.logger.info({ steps_done: 0 }, GENERATION_CANCELED);
      return { outcome: 'canceled' };
    }
    ctx.logger.info(GENERATION_SKIPPED);
    return { outcome: 'skipped' };
  }

  async function settleFailure(ctx: JobContext, error: unknown): Promise<Settlement> {
    try {
      return await recordFailure(ctx, error);
    } catch (recordError) {
      // The database is unreachable too: pg-boss still decides (retry or give up) when the loop
      // settles the job; the row is corrected by the next attempt (or by its last one). The
      // attempt's usage record is lost with its transaction; the metric and this line keep it.
      ctx.logger.error(
        { err: recordError, cause: error instanceof Error ? error.message : String(error), ...meter(ctx) },
        'could not record the failed attempt; leaving it to pg-boss',
      );
      return { outcome: 'retry', error: classifyFailure(error), code: 'database_unavailable' };
    }
  }

  async function recordFailure(ctx: JobContext, error: unknown): Promise<Settlement> {
    const { job, logger } = ctx;
    // The last step reached is what the row shows (and what the log and the ledger report).
    await ctx.progress?.flush();
    const stepsDone = ctx.progress?.stepsDone ?? 0;
    if (ctx.cancel.signal.aborted) {
      const canceled = await withWebhookEvent(db, deps.boss, async (trx) => {
        const row = await markCanceled(trx, ctx.id);
        await recordRun(trx, ctx, 'canceled', stepsDone);
        return row;
      });
      if (!canceled) logger.warn('generation changed state while canceling');
      logger.info(
        { steps_done: stepsDone, steps_total: ctx.progress?.total ?? null, ...meter(ctx) },
        GENERATION_CANCELED,
      );
      return { outcome: 'canceled' };
    }
    const cause = job.signal.aborted
      ? new JobTimeoutAbort(`job exceeded its timeout of ${job.expireInSeconds} s`, { cause: error })
      : shutdownSignal.aborted
        ? new ShutdownAbort('worker shut down before the job finished', { cause: error })
        : error;
    const failure = classifyFailure(cause);
    const lastAttempt = job.retryCount >= job.retryLimit;
    if (failure.permanent || lastAttempt) {
      await withWebhookEvent(db, deps.boss, async (trx) => {
        const row = await markFailed(trx, ctx.id, failure);
        await recordRun(trx, ctx, 'failed', stepsDone);
        return row;
      });
      logger.error(
        { err: error, code: failure.code, permanent: failure.permanent, ...meter(ctx) },
        GENERATION_FAILED,
      );
      return failure.permanent
        ? { outcome: 'failed', code: failure.code }
        : { outcome: 'failed', error: failure, code: failure.code };
    }
    // Retried later by pg-boss: show it as waiting again rather than stuck in 'running'. After a
    // model run its usage record commits with the requeue; before one, one statement is enough.
    if (ctx.run) {
      await db.transaction().execute(async (trx) => {
        await markRequeued(trx, ctx.id);
        await recordRun(trx, ctx, 'retry', stepsDone);
      });
    } else await markRequeued(db, ctx.id);
    logger.warn({ err: error, code: failure.code, ...meter(ctx) }, GENERATION_ATTEMPT_FAILED);
    return { outcome: 'retry', error: failure, code: failure.code };
  }

  /**
   * The usage record of the attempt's model run, if it had one (the claim succeeded and the model
   * ran), written with the attempt's outcome. `steps`: denoising steps done; `images`: stored.
   */
  async function recordRun(trx: Db, ctx: JobContext, outcome: UsageOutcome, steps: number, images = 0) {
    const run = ctx.run;
    if (!run) return;
    const { generation } = run;
    await recordUsage(trx, {
      generation_id: generation.id,
      attempt: generation.attempts,
      api_key_id: generation.api_key_id,
      model: generation.model,
      outcome,
      accelerator_us: run.acceleratorUs,
      images,
      pixel_steps: generation.width * generation.height * steps * generation.num_images,
    });
  }

  /** The run's log field, counted in the metric the first time (one attempt, one increment). */
  function meter(ctx: JobContext): { accelerator_us?: number } {
    const run = ctx.run;
    if (!run) return {};
    if (!run.metered) {
      run.metered = true;
      deps.onAcceleratorUsage?.(run.generation.model, run.acceleratorUs);
    }
    return { accelerator_us: run.acceleratorUs };
  }

  /** Runs a stage; an error it throws becomes the attempt's settlement (the watch ends with it). */
  async function guarded<T extends object>(ctx: JobContext, stage: () => Promise<T | Settlement>) {
    try {
      const value = await stage();
      if (isSettlement(value)) ctx.unwatch?.();
      return value;
    } catch (error) {
      ctx.unwatch?.();
      return settleFailure(ctx, error);
    }
  }

  return {
    async prepare(job) {
      const parsed = generationJob.safeParse(job.data);
      if (!parsed.success) {
        // A payload we cannot read will never become readable: drop it loudly rather than retry.
        deps.logger.error(
          { job_id: job.id, issues: parsed.error.issues },
          'unreadable generation job payload',
        );
        return { outcome: 'skipped' };
      }
      const ctx = contextFor(job, parsed.data.generation_id);
      return guarded(ctx, async () => {
        const generation = await findGeneration(db, ctx.id);
        if (!generation || TERMINAL_STATUSES.includes(generation.status)) return cancelOrSkip(ctx);
        if (generation.cancel_requested_at) return cancelOrSkip(ctx);
        // Russian prompts become English before tokenization (CLIP's vocabulary is English); done
        // here, while the previous job still denoises, so the accelerator never waits for it.
        const [prompt, negative] = await Promise.all([
          translatePrompt(deps.translator, generation.prompt, deps.translationMode, deps.languages),
          translatePrompt(deps.translator, generation.negative_prompt, deps.translationMode, deps.languages),
        ]);
        if (prompt.translated || negative.translated) {
          await recordTranslation(db, ctx.id, prompt.promptEn, negative.promptEn);
        }
        return { ctx, generation, prompt, negative } satisfies PreparedJob;
      });
    },

    async denoise(prepared) {
      const { ctx, prompt, negative, generation: params } = prepared;
      const { id, logger } = ctx;
      const requestCancel = () => ctx.cancel.abort(new CancelAbort('the generation was canceled'));
      // Watched before the claim, so a cancel sent right after it is not missed.
      ctx.unwatch = deps.cancels?.watch(id, requestCancel);
      return guarded(ctx, async () => {
        ctx.signal.throwIfAborted();
        // The claim (row → running, webhook event) commits while the model already runs: the
        // accelerator does not wait for a database round trip. The parameters come from the row
        // read in prepare (they never change after creation). If the claim finds the row no longer
        // runnable, or fails, the model is stopped at its next step.
        // Without a 'generation.started' webhook the claim is one statement, not a transaction
        // (three round trips): it is what a client waits for between create and `running`.
        const unclaimed = new AbortController();
        const workerId = deps.workerId ?? null;
        const claiming = wantsWebhookEvent(params, 'generation.started')
          ? withWebhookEvent(db, deps.boss, (trx) => markRunning(trx, id, workerId))
          : markRunning(db, id, workerId);
        const claim = claiming.then(
          (generation) => {
            if (!generation) unclaimed.abort(new Error('the generation is no longer runnable'));
            else {
              deps.onActive?.(id);
              logger.info(
                { steps: generation.steps, width: generation.width, height: generation.height },
                GENERATION_STARTED,
              );
            }
            return generation;
          },
          (error: unknown) => {
            unclaimed.abort(error);
            throw error;
          },
        );
        ctx.progress = createProgressReporter({
          async write(record) {
            // Progress belongs to the claimed attempt: written only once the claim committed.
            if (!(await claim)) return;
            const state = await recordProgress(db, id, record);
            if (state?.cancelRequested) requestCancel();
          },
          onError: (error) => logger.warn({ err: error }, 'progress write failed'),
        });
        const acceleratorStart = performance.now();
        /** When model.generate returned or threw: the claim may still be committing then. */
        let generatedAt = acceleratorStart;
        try {
          const generating = model
            .generate({
              prompt: prompt.promptEn,
              negativePrompt: negative.promptEn,
              width: params.width,
              height: params.height,
              steps: params.steps,
              guidanceScale: params.guidance_scale,
              seed: params.seed,
              numImages: params.num_images,
              scheduler: (params.requested_scheduler as SchedulerChoice | null) ?? undefined,
              karras: params.requested_karras ?? undefined,
              signal: AbortSignal.any([ctx.signal, unclaimed.signal]),
              onStep: ctx.progress.step,
            })
            .finally(() => {
              generatedAt = performance.now();
            });
          const [claimed, generated] = await Promise.allSettled([claim, generating]);
          const acceleratorEnd = performance.now();
          // Only a claimed attempt is metered: without a row the model is stopped at its next step
          // and nothing is recorded (the attempt belongs to no one).
          if (claimed.status === 'fulfilled' && claimed.value) {
            const acceleratorUs = Math.round((generatedAt - acceleratorStart) * 1000);
            ctx.run = { generation: claimed.value, acceleratorUs, metered: false };
          }
          if (claimed.status === 'rejected') throw claimed.reason;
          if (!claimed.value) return cancelOrSkip(ctx);
          if (generated.status === 'rejected') throw generated.reason;
          return {
            ...prepared,
            generation: claimed.value,
            result: generated.value,
            acceleratorStart,
            acceleratorEnd,
          } satisfies DenoisedJob;
        } finally {
          deps.onActive?.(undefined);
        }
      });
    },

    async finish(denoised) {
      const { ctx, generation, result, prompt, negative } = denoised;
      const settled = await guarded(ctx, async () => {
        // The last step's progress is written here, off the accelerator's path; a cancel it (or
        // the LISTEN) reports can still drop images that were never stored. Once stored, they are kept.
        await ctx.progress?.flush();
        ctx.cancel.signal.throwIfAborted();
        const jpegStart = performance.now();
        const jpegs = await Promise.all(result.images.map((image) => encodeJpeg(image)));
        const jpegMs = performance.now() - jpegStart;

        const uploadStart = performance.now();
        const outputs: StoredOutput[] = await Promise.all(
          jpegs.map(async (jpeg, index) => {
            // Keys come from the id and index: a retried attempt overwrites, never adds, objects.
            const key = outputKey(ctx.id, index);
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
        const recorded = await withWebhookEvent(db, deps.boss, async (trx) => {
          const row = await markSucceeded(trx, ctx.id, {
            translated: prompt.translated || negative.translated,
            promptEn: prompt.promptEn,
            negativePromptEn: negative.promptEn,
            outputs,
            timings,
            scheduler: result.scheduler,
            promptTruncated: result.promptTruncated,
          });
          // Ended meanwhile by someone else (the reconciler's timeout): the run still cost its
          // time, but the client got no images, so it is not metered as a success.
          if (row) await recordRun(trx, ctx, 'succeeded', generation.steps, outputs.length);
          else await recordRun(trx, ctx, 'failed', generation.steps);
          return row;
        });
        if (!recorded) ctx.logger.warn('generation changed state while running; result kept in storage only');
        // Accelerator start/end (this process's monotonic clock, ms) let a benchmark or an
        // operator measure the GPU's idle gaps between consecutive jobs from the log alone.
        ctx.logger.info(
          {
            timings,
            accelerator_start_ms: round(denoised.acceleratorStart),
            accelerator_end_ms: round(denoised.acceleratorEnd),
            ...meter(ctx),
          },
          GENERATION_SUCCEEDED,
        );
        return { outcome: 'succeeded', timings, steps: generation.steps } satisfies Settlement;
      });
      ctx.unwatch?.();
      return settled;
    },
  };
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
