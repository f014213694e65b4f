// Expected values follow diffusers' LCMScheduler (src/diffusers/schedulers/scheduling_lcm.py:
// set_timesteps, get_scalings_for_boundary_condition_discrete, step) and the LCM paper
// (Luo et al. 2023, arXiv:2310.04378, eq. 9 and Algorithm 3), computed here independently of the
// module under test (ᾱ summed in log space). The 4-step schedule 999, 759, 499, 259 is the one
// LCM model cards publish.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SchedulerConfig } from './common.ts';
import { lcmMaxSteps, lcmScalings, lcmScheduler, lcmTimesteps } from './lcm.ts';
import { closeWithin, fixedNoise, SD15_ALPHA_BARS } from './testing.ts';

const close = closeWithin(1e-6);
const referenceAlphaBar = (t: number) => SD15_ALPHA_BARS[t] as number;

const LCM: SchedulerConfig = {
  _class_name: 'LCMScheduler',
  num_train_timesteps: 1000,
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  prediction_type: 'epsilon',
  original_inference_steps: 50,
  timestep_scaling: 10,
  set_alpha_to_one: true,
  steps_offset: 1,
  timestep_spacing: 'leading',
};

test('timesteps are picked from the 50-step distillation schedule 999, 979, …, 19', () => {
  assert.deepEqual([...lcmTimesteps(LCM, 4)], [999, 759, 499, 259]);
  assert.deepEqual([...lcmTimesteps(LCM, 1)], [999]);
  assert.deepEqual([...lcmTimesteps(LCM, 2)], [999, 499]);
  assert.deepEqual([...lcmTimesteps(LCM, 3)], [999, 679, 339]);
  assert.deepEqual([...lcmTimesteps(LCM, 8)], [999, 879, 759, 639, 499, 379, 259, 139]);
  // 50 steps walk the whole distillation schedule.
  const all = lcmTimesteps(LCM, 50);
  assert.equal(all[0], 999);
  assert.equal(all[49], 19);
  for (let i = 1; i < 50; i++) assert.equal(all[i - 1] - all[i], 20);
  // original_inference_steps 100: k = 10, schedule 999, 989, …, 9.
  assert.deepEqual([...lcmTimesteps({ ...LCM, original_inference_steps: 100 }, 4)], [999, 749, 499, 249]);
  // timestep_spacing and steps_offset do not apply to LCM.
  assert.deepEqual(
    [...lcmTimesteps({ ...LCM, timestep_spacing: 'trailing', steps_offset: 0 }, 4)],
    [999, 759, 499, 259],
  );
});

test('more steps than original_inference_steps are refused', () => {
  assert.equal(lcmMaxSteps(LCM), 50);
  assert.equal(lcmMaxSteps({ ...LCM, original_inference_steps: undefined }), 50);
  assert.throws(() => lcmTimesteps(LCM, 51), /original_inference_steps/);
  assert.throws(() => lcmTimesteps(LCM, 0), RangeError);
});

test('boundary scalings: c_skip = σ_d²/((10t)² + σ_d²), c_out = 10t/√((10t)² + σ_d²), σ_d = 0.5', () => {
  const at0 = lcmScalings(0, 10);
  assert.equal(at0.cSkip, 1);
  assert.equal(at0.cOut, 0);
  // t = 999: (10t)² = 99800100 → c_skip = 0.25/99800100.25 = 2.50501e-9.
  const at999 = lcmScalings(999, 10);
  close(at999.cSkip, 0.25 / 99800100.25, 1e-12);
  close(at999.cOut, 9990 / Math.sqrt(99800100.25), 1e-12);
  // t = 1: (10t)² = 100 → c_skip = 0.25/100.25, c_out = 10/√100.25.
  close(lcmScalings(1, 10).cSkip, 0.25 / 100.25, 1e-12);
  close(lcmScalings(1, 10).cOut, 10 / Math.sqrt(100.25), 1e-12);
});

test('a worked 4-step run: x̂₀, the boundary condition, then noise re-injected at ᾱ_prev (none after the last step)', () => {
  const eps = [0.3, -0.2];
  const z = [
    [0.5, -1.1],
    [-0.8, 0.35],
    [1.4, 0.6],
  ];
  const noise = fixedNoise(z);
  const schedule = lcmScheduler(LCM, 4, { noise });
  assert.equal(schedule.initNoiseSigma, 1);
  assert.equal(schedule.inputScale(2), 1);
  const latents = Float32Array.of(0.9, -1.3);
  for (let step = 0; step < 4; step++) schedule.step(step, latents, Float32Array.from(eps));
  assert.equal(noise.calls, 3);

  const timesteps = [999, 759, 499, 259];
  const x = [0.9, -1.3];
  for (let i = 0; i < 4; i++) {
    const t = timesteps[i];
    const alpha = referenceAlphaBar(t);
    const scaled = 10 * t;
    const cSkip = 0.25 / (scaled ** 2 + 0.25);
    const cOut = scaled / Math.sqrt(scaled ** 2 + 0.25);
    for (let k = 0; k < 2; k++) {
      const x0 = (x[k] - Math.sqrt(1 - alpha) * eps[k]) / Math.sqrt(alpha);
      const denoised = cOut * x0 + cSkip * x[k];
      if (i === 3) x[k] = denoised;
      else {
        const prev = referenceAlphaBar(timesteps[i + 1]);
        x[k] = Math.sqrt(prev) * denoised + Math.sqrt(1 - prev) * z[i][k];
      }
    }
  }
  close(latents[0], x[0]);
  close(latents[1], x[1]);
});

test('step 0 worked by hand: ᾱ_999 = 0.00466010, ᾱ_759 = 0.0522129', () => {
  close(referenceAlphaBar(999), 0.0046601, 1e-5);
  close(referenceAlphaBar(759), 0.0522129, 1e-5);
  const schedule = lcmScheduler(LCM, 4, { noise: fixedNoise([[0.5]]) });
  const latents = Float32Array.of(0.9);
  schedule.step(0, latents, Float32Array.of(0.3));
  // x̂₀ = (0.9 − √0.9953399·0.3)/√0.0046601 = 0.600700/0.0682650 = 8.799540;
  // c_out ≈ 1 − 1.25e-9, c_skip ≈ 2.5e-9, so denoised ≈ x̂₀;
  // x = √0.0522129·8.799540 + √0.9477871·0.5 = 2.010708 + 0.486772 = 2.497480
  close(latents[0], 2.49748, 1e-6);
});

test('v_prediction: x̂₀ = √ᾱ·x − √(1−ᾱ)·v; sample: x̂₀ = output; clip_sample clamps x̂₀', () => {
  const t = 499;
  const alpha = referenceAlphaBar(t);
  const scaled = 10 * t;
  const cSkip = 0.25 / (scaled ** 2 + 0.25);
  const cOut = scaled / Math.sqrt(scaled ** 2 + 0.25);
  const x = 0.7;
  const out = -0.4;
  const cases = {
    v_prediction: Math.sqrt(alpha) * x - Math.sqrt(1 - alpha) * out,
    sample: out,
  } as const;
  for (const [type, x0] of Object.entries(cases)) {
    // The last step of the 2-step schedule 999, 499: no noise, x = denoised.
    const schedule = lcmScheduler({ ...LCM, prediction_type: type as keyof typeof cases }, 2, {
      noise: fixedNoise([]),
    });
    const latents = Float32Array.of(x);
    schedule.step(1, latents, Float32Array.of(out));
    close(latents[0], cOut * x0 + cSkip * x, 1e-6, type);
  }
  const clipped = lcmScheduler({ ...LCM, prediction_type: 'sample', clip_sample: true }, 2, {
    noise: fixedNoise([]),
  });
  const latents = Float32Array.of(x);
  clipped.step(1, latents, Float32Array.of(3));
  close(latents[0], cOut * 1 + cSkip * x, 1e-6);
});

test('it is stochastic: without a noise source it refuses to build', () => {
  assert.throws(() => lcmScheduler(LCM, 4), /noise source/);
});
