// What a generation request may ask for, shared by every layer that reads or writes one: the API
// validates against it, the worker runs it, the CLI offers it. It lives here, below api/ and
// gpu-worker/, so neither imports the other (the API image ships without gpu-worker/).

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
