// Which sampler runs for a request. Without a choice, the scheduler_config.json `_class_name`
// picks it when Easel implements that class; any other class (e.g. PNDMScheduler, which SD 1.5
// exports ship) runs Euler on the same training schedule, as diffusers'
// `EulerDiscreteScheduler.from_config` would. A chosen sampler is built from the same config, as
// `<Class>.from_config(pipe.scheduler.config)` would build it: every sampler reads the fields it
// knows (training schedule, prediction_type, timestep_spacing, use_karras_sigmas, …) and keeps its
// own defaults for the rest.

import { KARRAS_SCHEDULER_CHOICES, type SchedulerChoice } from '../text-to-image.ts';
import type { Scheduler, SchedulerConfig, SchedulerOptions } from './common.ts';
import { ddimScheduler } from './ddim.ts';
import { dpmpp2mScheduler } from './dpmpp-2m.ts';
import { eulerScheduler } from './euler.ts';
import { eulerAncestralScheduler } from './euler-ancestral.ts';
import { lcmMaxSteps, lcmScheduler } from './lcm.ts';

type SchedulerFactory = (config: SchedulerConfig, steps: number, options: SchedulerOptions) => Scheduler;

const factories: Record<SchedulerChoice, SchedulerFactory> = {
  euler: eulerScheduler,
  euler_a: eulerAncestralScheduler,
  ddim: ddimScheduler,
  lcm: lcmScheduler,
  dpmpp_2m: dpmpp2mScheduler,
};

/** diffusers class → the choice that runs it. */
const classChoices: Record<string, SchedulerChoice> = {
  EulerDiscreteScheduler: 'euler',
  EulerAncestralDiscreteScheduler: 'euler_a',
  DDIMScheduler: 'ddim',
  LCMScheduler: 'lcm',
  DPMSolverMultistepScheduler: 'dpmpp_2m',
};

export const DEFAULT_SCHEDULER = 'EulerDiscreteScheduler';

/** A sampler and its σ spacing, fully resolved. */
export interface SchedulerSelection {
  readonly choice: SchedulerChoice;
  readonly karras: boolean;
}

export function supportsKarras(choice: SchedulerChoice): boolean {
  return (KARRAS_SCHEDULER_CHOICES as readonly SchedulerChoice[]).includes(choice);
}

/** The class name that runs for this config when the request does not choose. */
export function schedulerName(config: SchedulerConfig): string {
  const name = config._class_name;
  return name !== undefined && Object.hasOwn(classChoices, name) ? name : DEFAULT_SCHEDULER;
}

/** What a request without a choice runs: the config's class (else Euler) and its use_karras_sigmas. */
export function defaultScheduler(config: SchedulerConfig): SchedulerSelection {
  const choice = classChoices[schedulerName(config)];
  return { choice, karras: supportsKarras(choice) && config.use_karras_sigmas === true };
}

/**
 * Resolves a request's optional choice against the model's config. `karras` falls back to the
 * config's use_karras_sigmas and is false for samplers without Karras σ; callers reject an
 * explicit `karras: true` for those first (see supportsKarras).
 */
export function selectScheduler(
  config: SchedulerConfig,
  request: { scheduler?: SchedulerChoice; karras?: boolean } = {},
): SchedulerSelection {
  const choice = request.scheduler ?? defaultScheduler(config).choice;
  const karras = supportsKarras(choice) && (request.karras ?? config.use_karras_sigmas === true);
  return { choice, karras };
}

/** The name results report: the choice, suffixed `_karras` with Karras σ. */
export function schedulerLabel(selection: SchedulerSelection): string {
  return selection.karras ? `${selection.choice}_karras` : selection.choice;
}

/** The most inference steps the sampler can run on this config. */
export function maxSchedulerSteps(config: SchedulerConfig, choice: SchedulerChoice): number {
  return choice === 'lcm' ? lcmMaxSteps(config) : (config.num_train_timesteps ?? 1000);
}

/**
 * Builds the sampler for one generation. `options.noise` is required by the stochastic samplers
 * (euler_a, lcm).
 */
export function createScheduler(
  config: SchedulerConfig,
  steps: number,
  selection: SchedulerSelection = defaultScheduler(config),
  options: SchedulerOptions = {},
): Scheduler {
  const effective = { ...config, use_karras_sigmas: selection.karras };
  return factories[selection.choice](effective, steps, options);
}
