import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { encodeJpeg } from './jpeg.ts';

function gradient(width: number, height: number): Uint8Array {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      rgb[p] = (x * 255) / (width - 1);
      rgb[p + 1] = (y * 255) / (height - 1);
      rgb[p + 2] = 128;
    }
  }
  return rgb;
}

test('encodes RGB bytes to a JPEG of the same size that decodes back to the same picture', async () => {
  const width = 96;
  const height = 64;
  const rgb = gradient(width, height);
  const jpeg = await encodeJpeg({ rgb, width, height });

  assert.deepEqual([...jpeg.subarray(0, 3)], [0xff, 0xd8, 0xff]);
  const metadata = await sharp(jpeg).metadata();
  assert.equal(metadata.format, 'jpeg');
  assert.equal(metadata.width, width);
  assert.equal(metadata.height, height);
  assert.equal(metadata.channels, 3);

  const decoded = await sharp(jpeg).raw().toBuffer();
  let error = 0;
  for (let i = 0; i < rgb.length; i++) error += Math.abs(decoded[i] - rgb[i]);
  assert.ok(error / rgb.length < 4, `mean absolute error ${error / rgb.length} too large for quality 90`);
});

test('quality changes the size', async () => {
  const noise = new Uint8Array(64 * 64 * 3).map((_, i) => (i * 2654435761) >>> 24);
  const image = { rgb: noise, width: 64, height: 64 };
  const [low, high] = await Promise.all([encodeJpeg(image, 30), encodeJpeg(image, 95)]);
  assert.ok(low.length < high.length);
});

test('rejects a buffer that does not match the dimensions', async () => {
  await assert.rejects(encodeJpeg({ rgb: new Uint8Array(10), width: 4, height: 4 }), RangeError);
});
