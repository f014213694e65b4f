// Seeded Gaussian noise for the initial latents.
//
// Why not Math.random or a library: a generation must be reproducible from (model, prompt,
// settings, seed) on any machine and any Node version, so the generator is spelled out here.
//
// Generator: mulberry32 (a 32-bit state PRNG by Tommy Ettinger; passes gjrand/PractRand up to the
// sizes used here) yields uniforms in [0, 1); Box–Muller turns each pair into two independent
// standard normals, both of which are used (cos then sin), in order.
//
// Seeding rule for batches: image i of a batch draws its whole initial latent (C×H×W values, in
// CHW order) from its own generator seeded with (seed + i) mod 2^32. Image i of a batch therefore
// equals a single-image run with seed + i, for the deterministic schedulers (Euler, DDIM with
// eta = 0): a batch of 4 at seed s is the same as four runs at s, s+1, s+2, s+3.
//
// These numbers do not match torch.randn for the same seed; images are reproducible within Easel,
// not across implementations.

export const MAX_SEED = 0xffff_ffff;

/** mulberry32: returns uniforms in [0, 1) with 32 bits of resolution. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fills `out` with standard normal values from a generator seeded with `seed`. */
export function fillGaussian(out: Float32Array | Float64Array, seed: number): void {
  const uniform = mulberry32(seed);
  for (let i = 0; i < out.length; i += 2) {
    // 1 - u is in (0, 1], so the log never sees 0.
    const radius = Math.sqrt(-2 * Math.log(1 - uniform()));
    const angle = 2 * Math.PI * uniform();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < out.length) out[i + 1] = radius * Math.sin(angle);
  }
}

/** Seed of image `index` in a batch started at `seed` (the batch rule above). */
export function imageSeed(seed: number, index: number): number {
  return (seed + index) >>> 0;
}

/**
 * Initial latents for a batch, laid out [numImages, ...perImage] contiguously, each image from
 * its own seed and multiplied by `scale` (the scheduler's init_noise_sigma).
 */
export function initialLatents(
  seed: number,
  numImages: number,
  perImage: number,
  scale: number,
): Float32Array {
  const latents = new Float32Array(numImages * perImage);
  for (let i = 0; i < numImages; i++) {
    const image = latents.subarray(i * perImage, (i + 1) * perImage);
    fillGaussian(image, imageSeed(seed, i));
    for (let k = 0; k < image.length; k++) image[k] *= scale;
  }
  return latents;
}
