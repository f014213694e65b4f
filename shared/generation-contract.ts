// What a generation request may ask for, shared by every layer that reads or writes one: the API
// validates against it, the worker runs it, the CLI offers it. It lives here, below api/ and
// gpu-worker/, so neither imports the other (the API image ships without gpu-worker/). The
// resource a generation is shown as (its zod schema and the row → resource mapping) is beside it,
// in generation.schemas.ts and generation-resource.ts.

/**
 * The one set of limits on a request's parameters. Sides and seeds bind everyone: the API's
 * schema, the pipeline (which refuses any other size or seed whoever calls it) and the CLI's
 * flags. Prompt length, steps, guidance and image count are the service's per-request caps, which
 * the API enforces; the pipeline takes any step count its scheduler allows (the tests enqueue
 * 1000-step jobs directly) and `easel generate`, which runs on the caller's own machine, has wider
 * bounds for those.
 */
export const GENERATION_LIMITS = {
  /** Characters in `prompt` and in `negative_prompt`. */
  promptMaxLength: 2000,
  /**
   * Image width and height in pixels. Multiples of 8 because the VAE works on 8×8-pixel latent
   * cells; 2048 is also where MAX_PIXELS (width × height) tops out.
   */
  side: { min: 64, max: 2048, multipleOf: 8, default: 512 },
  steps: { min: 1, max: 150, default: 25 },
  guidanceScale: { min: 0, max: 30, default: 7.5 },
  numImages: { min: 1, max: 4, default: 1 },
  /** Seeds are uint32; image i of a batch uses seed + i. */
  seed: { min: 0, max: 0xffff_ffff },
} as const;

/**
 * Samplers a request can choose (the API's enum): Euler, Euler ancestral, DDIM (eta 0),
 * LCM and DPM++ 2M, each as diffusers implements the matching scheduler class.
 */
export const SCHEDULER_CHOICES = ['euler', 'euler_a', 'ddim', 'lcm', 'dpmpp_2m'] as const;
export type SchedulerChoice = (typeof SCHEDULER_CHOICES)[number];

/** The choices that accept `karras: true` (Karras et al.'s ρ = 7 σ spacing, use_karras_sigmas). */
export const KARRAS_SCHEDULER_CHOICES = [
  'euler',
  'euler_a',
  'dpmpp_2m',
] as const satisfies readonly SchedulerChoice[];
