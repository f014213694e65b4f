// Turning a decoder's output into the interleaved 8-bit RGB that GeneratedImage carries.

/** Float CHW in [-1, 1] (the range of the SD VAE and of Kandinsky's MoVQ) → interleaved 8-bit RGB. */
export function chwToRgb(chw: Float32Array, width: number, height: number): Uint8Array {
  const plane = width * height;
  const rgb = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    const offset = c * plane;
    for (let p = 0; p < plane; p++) {
      const v = Math.round((chw[offset + p] + 1) * 127.5);
      rgb[p * 3 + c] = Math.min(Math.max(v, 0), 255);
    }
  }
  return rgb;
}
