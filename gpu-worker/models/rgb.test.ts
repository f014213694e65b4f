import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chwToRgb } from './rgb.ts';

test('chwToRgb maps [-1, 1] to 0..255 with rounding and clamping, interleaving channels', () => {
  // 2 pixels: R plane, G plane, B plane.
  const chw = Float32Array.of(-1, 1, 0, -2, 2, 0.5);
  assert.deepEqual([...chwToRgb(chw, 2, 1)], [0, 128, 255, 255, 0, 191]);
});
