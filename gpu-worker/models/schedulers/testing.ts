// Test support for the scheduler tests (not a test file): reference values computed independently
// of the modules under test, a relative-tolerance assertion and a scripted noise source.

import assert from 'node:assert/strict';

/**
 * SD 1.x's training schedule ("scaled_linear", β from 0.00085 to 0.012 over 1000 steps) in float64:
 * ᾱ_t = Π_{s≤t} (1 − β_s), β_s = (√β₀ + s/999·(√β₁ − √β₀))², summed in log space. Index t = 0..999.
 */
export const SD15_ALPHA_BARS: readonly number[] = (() => {
  const a = Math.sqrt(0.00085);
  const b = Math.sqrt(0.012);
  const out: number[] = [];
  let log = 0;
  for (let s = 0; s < 1000; s++) {
    log += Math.log1p(-((a + (s / 999) * (b - a)) ** 2));
    out.push(Math.exp(log));
  }
  return out;
})();

/** σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) on SD 1.x's training schedule. */
export function referenceSigma(t: number): number {
  const alphaBar = SD15_ALPHA_BARS[t] as number;
  return Math.sqrt((1 - alphaBar) / alphaBar);
}

/** An assertion that `actual` is within `defaultRelative` (or the call's own tolerance) of `expected`. */
export function closeWithin(defaultRelative: number) {
  return (actual: number, expected: number, relative = defaultRelative, message?: string): void => {
    assert.ok(
      Math.abs(actual - expected) <= relative * Math.abs(expected),
      message ?? `${actual} is not within ${relative} of ${expected}`,
    );
  };
}

/** A noise source that hands out the given per-step vectors in turn and counts its calls. */
export function fixedNoise(perStep: number[][]) {
  const source = (out: Float32Array) => {
    const values = perStep[source.calls++] as number[];
    for (let i = 0; i < out.length; i++) out[i] = values[i] as number;
  };
  source.calls = 0;
  return source;
}
