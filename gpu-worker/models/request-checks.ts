// The checks every pipeline family makes on a GenerateRequest before any session runs, so a bad
// request fails with the field it names whoever sent it (the API checks the model's capabilities
// first; a job enqueued directly or `easel generate` reaches only these).
import { GenerationInputError } from './model-errors.ts';
import { MAX_SEED } from './random.ts';
import type { GenerateRequest } from './text-to-image.ts';

/** Width and height: positive multiples of `multiple` up to `max`. */
export function checkSides(
  request: Pick<GenerateRequest, 'width' | 'height'>,
  multiple: number,
  max: number,
): void {
  for (const field of ['width', 'height'] as const) {
    const value = request[field];
    if (!Number.isInteger(value) || value <= 0 || value % multiple !== 0 || value > max) {
      throw new GenerationInputError(
        field,
        `${field} must be a positive multiple of ${multiple} up to ${max}, got ${value}`,
      );
    }
  }
}

/** Steps from 1 to `max` (`sampler` names what sets the limit, when it depends on one). */
export function checkSteps(steps: number, max: number, sampler?: string): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > max) {
    throw new GenerationInputError(
      'steps',
      `steps must be an integer from 1 to ${max}${sampler ? ` for ${sampler}` : ''}, got ${steps}`,
    );
  }
}

/** Image count, seed and guidance scale. */
export function checkBatch(request: Pick<GenerateRequest, 'numImages' | 'seed' | 'guidanceScale'>): void {
  const { numImages, seed, guidanceScale } = request;
  if (!Number.isInteger(numImages) || numImages < 1) {
    throw new GenerationInputError('numImages', `numImages must be a positive integer, got ${numImages}`);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new GenerationInputError('seed', `seed must be an integer from 0 to ${MAX_SEED}, got ${seed}`);
  }
  if (!Number.isFinite(guidanceScale) || guidanceScale < 0) {
    throw new GenerationInputError(
      'guidanceScale',
      `guidanceScale must be a finite number >= 0, got ${guidanceScale}`,
    );
  }
}
