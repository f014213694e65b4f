// Which sampler runs: the config's `_class_name` by default (diffusers' class names), a request's
// choice otherwise, built from the same config as diffusers' `<Class>.from_config` would.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KARRAS_SCHEDULER_CHOICES, SCHEDULER_CHOICES } from '../text-to-image.ts';
import type { SchedulerConfig } from './common.ts';
import {
  createScheduler,
  defaultScheduler,
  maxSchedulerSteps,
  schedulerLabel,
  schedulerName,
  selectScheduler,
  supportsKarras,
} from './registry.ts';

const SD15: SchedulerConfig = {
  _class_name: 'PNDMScheduler',
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  steps_offset: 1,
};

const noise = (out: Float32Array) => out.fill(0);

test('the config class picks the default; classes Easel lacks run Euler', () => {
  const cases: [string | undefined, string][] = [
    ['EulerDiscreteScheduler', 'euler'],
    ['EulerAncestralDiscreteScheduler', 'euler_a'],
    ['DDIMScheduler', 'ddim'],
    ['LCMScheduler', 'lcm'],
    ['DPMSolverMultistepScheduler', 'dpmpp_2m'],
    ['PNDMScheduler', 'euler'],
    ['toString', 'euler'],
    [undefined, 'euler'],
  ];
  for (const [className, label] of cases) {
    assert.equal(schedulerLabel(defaultScheduler({ ...SD15, _class_name: className })), label, className);
  }
  assert.equal(schedulerName(SD15), 'EulerDiscreteScheduler');
  assert.equal(schedulerName({ ...SD15, _class_name: 'LCMScheduler' }), 'LCMScheduler');
});

test('use_karras_sigmas carries into the default, only for samplers with Karras σ', () => {
  const karras = { ...SD15, use_karras_sigmas: true };
  assert.deepEqual(defaultScheduler({ ...karras, _class_name: 'DPMSolverMultistepScheduler' }), {
    choice: 'dpmpp_2m',
    karras: true,
  });
  assert.equal(schedulerLabel(defaultScheduler(karras)), 'euler_karras');
  assert.equal(schedulerLabel(defaultScheduler({ ...karras, _class_name: 'DDIMScheduler' })), 'ddim');
});

test('a request’s choice overrides the class; karras falls back to the config, false overrides it', () => {
  const karras = { ...SD15, _class_name: 'EulerDiscreteScheduler', use_karras_sigmas: true };
  assert.deepEqual(selectScheduler(karras, {}), { choice: 'euler', karras: true });
  assert.deepEqual(selectScheduler(karras, { scheduler: 'dpmpp_2m' }), { choice: 'dpmpp_2m', karras: true });
  assert.deepEqual(selectScheduler(karras, { scheduler: 'euler_a', karras: false }), {
    choice: 'euler_a',
    karras: false,
  });
  assert.deepEqual(selectScheduler(SD15, { karras: true }), { choice: 'euler', karras: true });
  assert.deepEqual(selectScheduler(karras, { scheduler: 'lcm' }), { choice: 'lcm', karras: false });
  assert.equal(schedulerLabel({ choice: 'dpmpp_2m', karras: true }), 'dpmpp_2m_karras');
  assert.deepEqual(
    SCHEDULER_CHOICES.filter((choice) => supportsKarras(choice)),
    [...KARRAS_SCHEDULER_CHOICES],
  );
});

test('every choice builds the diffusers algorithm it names, with or without Karras σ', () => {
  const classes = {
    euler: 'EulerDiscreteScheduler',
    euler_a: 'EulerAncestralDiscreteScheduler',
    ddim: 'DDIMScheduler',
    lcm: 'LCMScheduler',
    dpmpp_2m: 'DPMSolverMultistepScheduler',
  } as const;
  for (const choice of SCHEDULER_CHOICES) {
    const plain = createScheduler(SD15, 8, { choice, karras: false }, { noise });
    assert.equal(plain.name, classes[choice]);
    assert.equal(plain.timesteps.length, 8);
    if (supportsKarras(choice)) {
      const karras = createScheduler(SD15, 8, { choice, karras: true }, { noise });
      assert.notDeepEqual([...karras.timesteps], [...plain.timesteps], choice);
    }
  }
  // The config's own use_karras_sigmas does not leak past an explicit selection.
  const explicit = createScheduler({ ...SD15, use_karras_sigmas: true }, 8, {
    choice: 'euler',
    karras: false,
  });
  assert.deepEqual([...explicit.timesteps], [...createScheduler(SD15, 8).timesteps]);
});

test('stochastic samplers need a noise source; LCM runs at most original_inference_steps', () => {
  assert.throws(() => createScheduler(SD15, 4, { choice: 'euler_a', karras: false }), /noise source/);
  assert.throws(() => createScheduler(SD15, 4, { choice: 'lcm', karras: false }), /noise source/);
  assert.equal(maxSchedulerSteps(SD15, 'lcm'), 50);
  assert.equal(maxSchedulerSteps({ ...SD15, original_inference_steps: 8 }, 'lcm'), 8);
  assert.equal(maxSchedulerSteps(SD15, 'dpmpp_2m'), 1000);
});
