// Denoising progress, persisted off the hot path: the step loop calls `step()` synchronously and
// never waits on the database. At most one write is in flight; a step that falls due meanwhile
// waits for it (replaced by any later step), every other step is dropped, and writes start at
// most every `intervalMs`, except the final step, which is always written.
import type { ProgressRecord } from '../db/generations.repository.ts';

export interface ProgressReporterOptions {
  write(progress: ProgressRecord): Promise<void>;
  /** Called with a failed write's error; progress is advisory, so the job goes on. */
  onError(error: unknown): void;
  intervalMs?: number;
  now?: () => number;
}

export interface ProgressReporter {
  /** The pipeline's onStep: cheap and synchronous. */
  step(step: number, total: number): void;
  /** Writes the latest step if it was dropped, then resolves once no write is in flight. */
  flush(): Promise<void>;
  /** The latest step seen (0 before the first) and its total (undefined before the first). */
  readonly stepsDone: number;
  readonly total: number | undefined;
}

export const PROGRESS_INTERVAL_MS = 250;
/** Weight of the newest step time in the moving average. */
const STEP_MS_ALPHA = 0.2;

export function createProgressReporter(options: ProgressReporterOptions): ProgressReporter {
  const now = options.now ?? (() => performance.now());
  const intervalMs = options.intervalMs ?? PROGRESS_INTERVAL_MS;
  let latest: ProgressRecord | undefined;
  /** The record last handed to a write (started or waiting), to know whether `latest` is covered. */
  let sent: ProgressRecord | undefined;
  let waiting: ProgressRecord | undefined;
  let inFlight: Promise<void> | undefined;
  let lastWriteAt = Number.NEGATIVE_INFINITY;
  let lastStepAt: number | undefined;
  let stepMs: number | null = null;

  function start(progress: ProgressRecord) {
    lastWriteAt = now();
    inFlight = options
      .write(progress)
      .catch((error: unknown) => options.onError(error))
      .finally(() => {
        inFlight = undefined;
        const next = waiting;
        waiting = undefined;
        if (next) start(next);
      });
  }

  function submit(progress: ProgressRecord) {
    sent = progress;
    if (inFlight) waiting = progress;
    else start(progress);
  }

  return {
    step(step, total) {
      const at = now();
      // The first step has no predecessor to time it against (its time includes setup).
      if (lastStepAt !== undefined) {
        const sample = at - lastStepAt;
        stepMs = stepMs === null ? sample : stepMs + STEP_MS_ALPHA * (sample - stepMs);
      }
      lastStepAt = at;
      latest = { step, total, stepMs: stepMs === null ? null : Math.round(stepMs * 100) / 100 };
      if (waiting) {
        // Already due and queued behind the write in flight: keep only the freshest.
        submit(latest);
        return;
      }
      if (step >= total || at - lastWriteAt >= intervalMs) submit(latest);
    },
    async flush() {
      if (latest && latest !== sent) submit(latest);
      while (inFlight) await inFlight;
    },
    get stepsDone() {
      return latest?.step ?? 0;
    },
    get total() {
      return latest?.total;
    },
  };
}
