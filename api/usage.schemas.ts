// Usage shapes for GET /v1/usage: the usage ledger (one record per accelerator run) summed per UTC
// day or per model, for one API key or (admin keys) all of them.
import { z } from '@hono/zod-openapi';

export const USAGE_GROUP_BY = ['day', 'model'] as const;
/** The longest range one request may sum (a leap year). */
export const MAX_USAGE_RANGE_DAYS = 366;
/** Without `from`: this many UTC days, the last one being the day `to` falls in. */
export const DEFAULT_USAGE_DAYS = 30;

// Instants Postgres and JavaScript agree on, as GET /v1/generations bounds its created_* filters.
const EARLIEST = '1970-01-01T00:00:00Z';
const LATEST = '9999-12-31T23:59:59.999Z';
const BOUND_ERROR =
  'must be a date (YYYY-MM-DD, meaning 00:00 UTC) or an RFC 3339 date-time with a time zone';

const instantOrDate = () =>
  z.union([z.iso.date(), z.iso.datetime({ offset: true })], { error: BOUND_ERROR }).refine(
    (value) => {
      const ms = Date.parse(value);
      return ms >= Date.parse(EARLIEST) && ms <= Date.parse(LATEST);
    },
    { error: `must be between ${EARLIEST} and ${LATEST}` },
  );

export const UsageQuery = z.object({
  from: instantOrDate()
    .optional()
    .openapi({
      param: {
        name: 'from',
        in: 'query',
        description:
          'Start of the range, inclusive: an RFC 3339 date-time, or a date (`YYYY-MM-DD`) meaning 00:00 UTC ' +
          `that day. Default: ${DEFAULT_USAGE_DAYS} UTC days ending with the last day the range covers (the ` +
          `day of the instant just before \`to\`): with \`to\` left out, the last ${DEFAULT_USAGE_DAYS} UTC ` +
          'days, today included; with `to=2026-12-01`, November 1 to 30. Must be before ' +
          `\`to\`, at most ${MAX_USAGE_RANGE_DAYS} days before it.`,
      },
      example: '2026-11-01',
    }),
  to: instantOrDate()
    .optional()
    .openapi({
      param: {
        name: 'to',
        in: 'query',
        description:
          'End of the range, exclusive: an RFC 3339 date-time, or a date (`YYYY-MM-DD`) meaning 00:00 UTC ' +
          'that day (so `to=2026-12-01` ends with November 30). Default: now.',
      },
      example: '2026-12-01',
    }),
  group_by: z
    .enum(USAGE_GROUP_BY, { error: 'must be day or model' })
    .default('day')
    .openapi({
      param: {
        name: 'group_by',
        in: 'query',
        description: '`day`: one entry per UTC day with usage. `model`: one entry per model that ran.',
      },
      example: 'model',
    }),
  api_key_id: z
    .union([z.literal('all'), z.uuid()], { error: 'must be an API key id or all' })
    .optional()
    .openapi({
      param: {
        name: 'api_key_id',
        in: 'query',
        description:
          "Admin keys only (others get 403 `forbidden`): another key's usage (`easel keys list` shows the " +
          'ids; an id no key has gives empty `data`), or `all` for every key together. Default: the ' +
          "calling key's own usage.",
      },
      example: 'all',
    }),
});

const counters = {
  attempts: z
    .int()
    .min(0)
    .openapi({
      description:
        'Accelerator runs: one per attempt that ran on a worker, whatever its outcome (succeeded, ' +
        'failed, canceled, or handed back for a retry).',
      example: 42,
    }),
  generations: z.int().min(0).openapi({
    description: 'Generations that succeeded (each succeeds once, however many attempts it took).',
    example: 40,
  }),
  images: z.int().min(0).openapi({
    description: 'Images delivered: those stored by succeeded attempts.',
    example: 61,
  }),
  pixel_steps: z
    .int()
    .min(0)
    .openapi({
      description:
        'Work done: width × height × denoising steps × images in the batch, summed over the attempts; ' +
        'an attempt that stopped early counts the steps it did.',
      example: 410_648_576,
    }),
  accelerator_ms: z
    .number()
    .min(0)
    .openapi({
      description:
        'Accelerator time, in milliseconds with microsecond precision: the workers measured busy time of ' +
        'each attempt (text encoding, denoising and decoding), failed and canceled attempts included.',
      example: 183_412.807,
    }),
};

const EXAMPLE_COUNTERS = {
  attempts: 42,
  generations: 40,
  images: 61,
  pixel_steps: 410_648_576,
  accelerator_ms: 183_412.807,
} as const;
const EXAMPLE_DAYS = [
  {
    day: '2026-11-27',
    attempts: 17,
    generations: 16,
    images: 24,
    pixel_steps: 160_432_128,
    accelerator_ms: 71_002.513,
  },
  {
    day: '2026-11-28',
    attempts: 25,
    generations: 24,
    images: 37,
    pixel_steps: 250_216_448,
    accelerator_ms: 112_410.294,
  },
] as const;

export const UsageCounters = z.object(counters).openapi('UsageCounters', {
  description: "What the ledger's records in a range sum to.",
  example: EXAMPLE_COUNTERS,
});

export const UsageDay = z
  .object({
    day: z.iso.date().openapi({ description: 'The UTC day (YYYY-MM-DD).', example: '2026-11-28' }),
    ...counters,
  })
  .openapi('UsageDay', { description: 'One UTC day (`group_by=day`).', example: EXAMPLE_DAYS[1] });

export const UsageModel = z
  .object({
    model: z.string().nullable().openapi({
      description: 'The model the attempts ran on; null for generations created before models existed.',
      example: 'sd15',
    }),
    ...counters,
  })
  .openapi('UsageModel', {
    description: 'One model (`group_by=model`).',
    example: { model: 'sd15', ...EXAMPLE_COUNTERS },
  });

const EXAMPLE_USAGE = {
  object: 'usage',
  from: '2026-10-30T00:00:00.000Z',
  to: '2026-11-28T16:42:07.311Z',
  group_by: 'day',
  api_key_id: '3f0c9a52-7d4e-4b8a-9c1f-2e6d8b5a7c31',
  data: EXAMPLE_DAYS,
  total: EXAMPLE_COUNTERS,
} as const;

export const Usage = z
  .object({
    object: z.literal('usage'),
    from: z.iso.datetime().openapi({
      description: 'Start of the range summed, inclusive (the default filled in).',
      example: EXAMPLE_USAGE.from,
    }),
    to: z.iso
      .datetime()
      .openapi({ description: 'End of the range summed, exclusive.', example: EXAMPLE_USAGE.to }),
    group_by: z.enum(USAGE_GROUP_BY).openapi({ description: 'How `data` is grouped.', example: 'day' }),
    api_key_id: z.uuid().nullable().openapi({
      description: 'The key whose usage this is; null for every key together (`api_key_id=all`).',
      example: EXAMPLE_USAGE.api_key_id,
    }),
    data: z.array(z.union([UsageDay, UsageModel])).openapi({
      description:
        'One entry per UTC day with usage (`day`, oldest first) or per model that ran (`model`, by id, ' +
        'null last). Days and models without usage are left out.',
    }),
    total: UsageCounters,
  })
  .openapi('Usage', {
    description:
      'The usage ledger summed over a range. Each attempt that ran on a worker is one record, stamped ' +
      'when its outcome was recorded: a range counts the attempts that ended within it.',
    example: EXAMPLE_USAGE,
  });

export type UsageResource = z.infer<typeof Usage>;
