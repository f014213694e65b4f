// Seeded Gaussian noise for the initial latents and for the stochastic samplers' per-step noise.
//
// Why not Math.random or a library: a generation must be reproducible from (model, prompt,
// settings, seed) on any machine and any Node version, so the generator is spelled out here.
//
// Generator: mulberry32 (a 32-bit state PRNG by Tommy Ettinger; passes gjrand/PractRand up to the
// sizes used here) yields uniforms in [0, 1); Box–Muller turns each pair into two independent
// standard normals, both of which are used (cos then sin), in order.
//
// Seeding rule for batches: image i of a batch has its own stream of normals from a generator
// seeded with (seed + i) mod 2^32, and nothing else. It draws, in this order:
//   1. its initial latent: C×H×W values in CHW order;
//   2. for every step of a stochastic sampler that adds noise (Euler ancestral: every step with
//      σ_up > 0; LCM: every step but the last), the next C×H×W values, in CHW order.
// Kandinsky draws the prior's values first (its initial embedding for the prompt row, then the
// negative-prompt row when there is one; then each noisy prior step's, in the same row order),
// then the decoder's initial latent and any per-step noise (DDPM).
// No image ever reads another image's stream, and every sampler works element by element, so
// image i of a batch equals a single-image run with seed + i for every scheduler, deterministic
// (Euler, DDIM with eta = 0, DPM++ 2M) or stochastic (Euler ancestral, LCM): a batch of 4 at
// seed s is the same as four runs at s, s+1, s+2, s+3.
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

export interface GaussianStream {
  /** Fills `out` with the stream's next standard normal values. */
  fill(out: Float32Array | Float64Array): void;
}

/**
 * An endless stream of standard normals from a generator seeded with `seed`. Consecutive fills
 * continue the sequence: filling 3 then 5 values gives the same 8 values as filling 8 at once.
 */
export function gaussianStream(seed: number): GaussianStream {
  const uniform = mulberry32(seed);
  // Box–Muller makes normals in pairs; the sine half waits here when a fill ends on the cosine.
  let spare = 0;
  let hasSpare = false;
  return {
    fill(out) {
      let i = 0;
      const n = out.length;
      if (hasSpare && n > 0) {
        out[i++] = spare;
        hasSpare = false;
      }
      while (i < n) {
        // 1 - u is in (0, 1], so the log never sees 0.
        const radius = Math.sqrt(-2 * Math.log(1 - uniform()));
        const angle = 2 * Math.PI * uniform();
        out[i++] = radius * Math.cos(angle);
        const sine = radius * Math.sin(angle);
        if (i < n) out[i++] = sine;
        else {
          spare = sine;
          hasSpare = true;
        }
      }
    },
  };
}

/** Fills `out` with standard normal values from a generator seeded with `seed`. */
export function fillGaussian(out: Float32Array | Float64Array, seed: number): void {
  gaussianStream(seed).fill(out);
}

/** Seed of image `index` in a batch started at `seed` (the batch rule above). */
export function imageSeed(seed: number, index: number): number {
  return (seed + index) >>> 0;
}

export interface BatchNoise {
  /**
   * Fills `out`, laid out [numImages, ...perImage] contiguously, with each image's next perImage
   * values from that image's own stream.
   */
  fill(out: Float32Array): void;
}

/** One stream per image of a batch, seeded by the batch rule above. */
export function batchStreams(seed: number, numImages: number): GaussianStream[] {
  return Array.from({ length: numImages }, (_, i) => gaussianStream(imageSeed(seed, i)));
}

/** One stream per image of a batch, seeded by the batch rule above. */
export function batchNoise(seed: number, numImages: number, perImage: number): BatchNoise {
  return batchNoiseOver(batchStreams(seed, numImages), perImage);
}

/**
 * A batch's noise over streams already in use: a two-stage pipeline (Kandinsky's prior, then
 * its decoder) draws each stage's values from the same per-image streams, one stage after the
 * other, so image i still depends on seed + i alone.
 */
export function batchNoiseOver(streams: readonly GaussianStream[], perImage: number): BatchNoise {
  const numImages = streams.length;
  // Per-image views of the last buffer filled: samplers refill the same scratch buffer every step.
  let target: Float32Array | undefined;
  let views: Float32Array[] = [];
  return {
    fill(out) {
      if (out.length !== numImages * perImage) {
        throw new RangeError(`noise for ${numImages}×${perImage} values, got a buffer of ${out.length}`);
      }
      if (out !== target) {
        target = out;
        views = streams.map((_, i) => out.subarray(i * perImage, (i + 1) * perImage));
      }
      for (let i = 0; i < numImages; i++) streams[i].fill(views[i]);
    },
  };
}

/**
 * Initial latents for a batch, laid out [numImages, ...perImage] contiguously, each image from
 * its own stream and multiplied by `scale` (the scheduler's init_noise_sigma). Pass the batch's
 * `noise` when a stochastic sampler will continue drawing from the same streams.
 */
export function initialLatents(
  seed: number,
  numImages: number,
  perImage: number,
  scale: number,
  noise: BatchNoise = batchNoise(seed, numImages, perImage),
): Float32Array {
  const latents = new Float32Array(numImages * perImage);
  noise.fill(latents);
  for (let k = 0; k < latents.length; k++) latents[k] *= scale;
  return latents;
}
