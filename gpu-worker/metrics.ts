// The worker's Prometheus metrics, served on HEALTH_PORT with /healthz and /readyz. The
// accelerator-busy counter is what an operator alerts on: 1 − rate(busy) while the queue holds
// work is the GPU's idle fraction. The accelerator-seconds counter is the usage ledger's time, per
// model: the same microseconds each attempt's usage record holds.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { GENERATION_STAGES, type StageTimingsRecord } from '../db/types.ts';
import type { Settlement } from './generation.handler.ts';

export interface WorkerMetrics {
  registry: Registry;
  acceleratorBusy(ms: number): void;
  /** One attempt's metered run (its usage record's accelerator_us), on the model it ran. */
  acceleratorUsage(model: string, acceleratorUs: number): void;
  settled(settlement: Settlement): void;
}

export function createWorkerMetrics(options: {
  heldJobs: () => number;
  ready: () => boolean;
}): WorkerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const stageSeconds = new Histogram({
    name: 'easel_worker_stage_duration_seconds',
    help: 'Time per stage of succeeded generations.',
    labelNames: ['stage'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const stepSeconds = new Histogram({
    name: 'easel_worker_denoise_step_duration_seconds',
    help: 'Mean time of one denoising step (UNet call(s) plus scheduler), per succeeded generation.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  const jobs = new Counter({
    name: 'easel_worker_jobs_total',
    help: 'Job attempts by outcome (succeeded, failed, canceled, skipped, retry).',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const failures = new Counter({
    name: 'easel_worker_failures_total',
    help: 'Failed attempts by error code (retried ones included).',
    labelNames: ['code'],
    registers: [registry],
  });
  const busy = new Counter({
    name: 'easel_worker_accelerator_busy_seconds_total',
    help: 'Time the accelerator spent on generations (text encoder, denoising loop, VAE decode).',
    registers: [registry],
  });
  // Labelled by model only, never by API key: its series stay as few as the models a worker holds.
  const acceleratorSeconds = new Counter({
    name: 'easel_accelerator_seconds_total',
    help:
      'Accelerator time of attempts that ran (every outcome), by model: what the usage ledger ' +
      '(GET /v1/usage) records for them.',
    labelNames: ['model'],
    registers: [registry],
  });
  new Gauge({
    name: 'easel_worker_jobs_in_hand',
    help: 'Jobs fetched and not yet settled: prefetched, on the accelerator, or finishing.',
    registers: [registry],
    collect() {
      this.set(options.heldJobs());
    },
  });
  new Gauge({
    name: 'easel_worker_ready',
    help: '1 once the models are loaded and warmed and the worker takes jobs.',
    registers: [registry],
    collect() {
      this.set(options.ready() ? 1 : 0);
    },
  });
  return {
    registry,
    acceleratorBusy: (ms) => busy.inc(ms / 1000),
    acceleratorUsage: (model, acceleratorUs) => acceleratorSeconds.inc({ model }, acceleratorUs / 1e6),
    settled(settlement) {
      jobs.inc({ outcome: settlement.outcome });
      if (settlement.code) failures.inc({ code: settlement.code });
      const timings: StageTimingsRecord | undefined = settlement.timings;
      if (!timings) return;
      for (const stage of GENERATION_STAGES) {
        const ms = timings[`${stage}_ms`];
        if (ms !== undefined) stageSeconds.observe({ stage }, ms / 1000);
      }
      if (timings.denoise_ms !== undefined && settlement.steps) {
        stepSeconds.observe(timings.denoise_ms / settlement.steps / 1000);
      }
    },
  };
}
