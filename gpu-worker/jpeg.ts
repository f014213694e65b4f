// JPEG encoding of generated images with sharp (libvips), off the JS thread.

import sharp from 'sharp';
import type { GeneratedImage } from './models/text-to-image.ts';

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
