// Which sampler runs for a model. The scheduler_config.json `_class_name` picks it when Easel
// implements that class; any other class (e.g. PNDMScheduler, which SD 1.5 exports ship) runs
// Euler on the same training schedule, as diffusers' `EulerDiscreteScheduler.from_config` would.

import type { Scheduler, SchedulerConfig } from './scheduler-common.ts';
import { ddimScheduler } from './scheduler-ddim.ts';
import { eulerScheduler } from './scheduler-euler.ts';

type SchedulerFactory = (config: SchedulerConfig, steps: number) => Scheduler;

const factories: Record<string, SchedulerFactory> = {
  EulerDiscreteScheduler: eulerScheduler,
  DDIMScheduler: ddimScheduler,
};

export const DEFAULT_SCHEDULER = 'EulerDiscreteScheduler';

/** The class name that will actually run for this config. */
export function schedulerName(config: SchedulerConfig): string {
  const name = config._class_name;
  return name !== undefined && name in factories ? name : DEFAULT_SCHEDULER;
}

export function createScheduler(config: SchedulerConfig, steps: number): Scheduler {
  return factories[schedulerName(config)](config, steps);
}
