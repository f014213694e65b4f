// JPEG encoding of generated images with sharp (libvips), off the JS thread.

import sharp from 'sharp';
import type { GeneratedImage } from './models/text-to-image.ts';

// libvips caches recent operations (up to 50 MB and 100 of them by default) in case the same
// image is processed again; every image here is new, so the cache only grows the worker's memory.
sharp.cache(false);

export async function encodeJpeg(image: GeneratedImage, quality = 90): Promise<Buffer> {
  const { rgb, width, height } = image;
  if (rgb.length !== width * height * 3) {
    throw new RangeError(
      `image is ${width}×${height} but has ${rgb.length} bytes, expected ${width * height * 3}`,
    );
  }
  // sharp reads raw input as bytes: a Uint8Array view, never a float array, or the image is garbage.
  const bytes = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  return sharp(bytes, { raw: { width, height, channels: 3 } })
    .jpeg({ quality })
    .toBuffer();
}
