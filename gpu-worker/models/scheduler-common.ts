// What every noise scheduler shares: the parsed scheduler_config.json, the training noise
// schedule (betas → alphas_cumprod) and the interface the pipelines drive. Pure: no I/O.
// Formulas follow diffusers (src/diffusers/schedulers/scheduling_*.py); diffusers computes in
// float32, this code in float64, so values agree to ~1e-6 relative.

import { z } from 'zod';

/** The fields of a diffusers scheduler_config.json that Easel reads; defaults differ per class. */
const schedulerConfigSchema = z.looseObject({
  _class_name: z.string().optional(),
  num_train_timesteps: z.number().int().positive().optional(),
  beta_start: z.number().positive().optional(),
  beta_end: z.number().positive().optional(),
  beta_schedule: z.enum(['linear', 'scaled_linear', 'squaredcos_cap_v2']).optional(),
  trained_betas: z.array(z.number()).nullish(),
  prediction_type: z.enum(['epsilon', 'v_prediction', 'sample']).optional(),
  timestep_spacing: z.enum(['linspace', 'leading', 'trailing']).optional(),
  steps_offset: z.number().int().nonnegative().optional(),
  interpolation_type: z.enum(['linear']).optional(),
  use_karras_sigmas: z.boolean().nullish(),
  final_sigmas_type: z.enum(['zero', 'sigma_min']).optional(),
  set_alpha_to_one: z.boolean().optional(),
  clip_sample: z.boolean().optional(),
  clip_sample_range: z.number().positive().optional(),
  rescale_betas_zero_snr: z.literal(false).optional(),
  thresholding: z.literal(false).optional(),
});

export type SchedulerConfig = z.infer<typeof schedulerConfigSchema>;
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';

/** Validates a parsed scheduler_config.json; throws an Error naming the first bad field. */
export function parseSchedulerConfig(raw: unknown): SchedulerConfig {
  const result = schedulerConfigSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new Error(`${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return result.data;
}

/**
 * The sampler interface the pipelines drive. Stateless per step index, so a schedule can be
 * built once per generate() call and run without allocation.
 */
export interface Scheduler {
  /** diffusers class name, reported with every result. */
  readonly name: string;
  /** Training timestep fed to the UNet at each step (may be fractional for some spacings). */
  readonly timesteps: Float64Array;
  /** Standard deviation of the initial noise. */
  readonly initNoiseSigma: number;
  /** Factor the latents are multiplied by before the UNet at `step` (scale_model_input). */
  inputScale(step: number): number;
  /** Advances `latents` in place from `step` to `step + 1` given the UNet's output. */
  step(step: number, latents: Float32Array, modelOutput: Float32Array): void;
}

/** Training-time alphas_cumprod (ᾱ_t), t = 0..num_train_timesteps-1. */
export function alphasCumprod(config: SchedulerConfig): Float64Array {
  const n = config.num_train_timesteps ?? 1000;
  const betas = trainingBetas(config, n);
  const out = new Float64Array(n);
  let product = 1;
  for (let t = 0; t < n; t++) {
    product *= 1 - betas[t];
    out[t] = product;
  }
  return out;
}

function trainingBetas(config: SchedulerConfig, n: number): Float64Array {
  if (config.trained_betas) {
    if (config.trained_betas.length !== n)
      throw new Error('trained_betas: length differs from num_train_timesteps');
    return Float64Array.from(config.trained_betas);
  }
  const start = config.beta_start ?? 0.0001;
  const end = config.beta_end ?? 0.02;
  const schedule = config.beta_schedule ?? 'linear';
  const betas = new Float64Array(n);
  if (schedule === 'linear') {
    const values = linspace(start, end, n);
    betas.set(values);
  } else if (schedule === 'scaled_linear') {
    const values = linspace(Math.sqrt(start), Math.sqrt(end), n);
    for (let t = 0; t < n; t++) betas[t] = values[t] * values[t];
  } else {
    // betas_for_alpha_bar with the cosine ᾱ(t) of Nichol & Dhariwal, capped at 0.999.
    const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    for (let t = 0; t < n; t++) betas[t] = Math.min(1 - alphaBar((t + 1) / n) / alphaBar(t / n), 0.999);
  }
  return betas;
}

/** numpy.linspace(start, stop, num) with endpoint=True. */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = start + i * step;
  out[num - 1] = stop;
  return out;
}

/** numpy.round: halves go to the even neighbour (diffusers' trailing spacing relies on it). */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}
