// Worker shapes for the operators' fleet view (GET /v1/workers).
import { z } from '@hono/zod-openapi';

const isoTime = z.iso.datetime().openapi({ example: '2026-11-28T10:15:30.123Z' });

const EXAMPLE_WORKER = {
  id: 'gpu-box-1-4242',
  object: 'worker',
  hostname: 'gpu-box-1',
  pid: 4242,
  provider: 'cuda',
  model: { dir: '/models/sd15', kind: 'stable-diffusion-1' },
  translator: { dir: '/models/ru-en', kind: 'marian' },
  current_generation_id: '0b6f8f2e-5c1e-4d3a-9a57-3f1f2d8c9e10',
  jobs_succeeded: 118,
  jobs_failed: 2,
  started_at: '2026-11-28T08:00:02.512Z',
  last_heartbeat_at: '2026-11-28T10:15:30.123Z',
  stopped_at: null,
  live: true,
} as const;

export const ListWorkersQuery = z.object({
  include_stale: z
    .enum(['true', 'false'], { error: 'must be true or false' })
    .default('false')
    .transform((value) => value === 'true')
    .openapi({
      param: {
        name: 'include_stale',
        in: 'query',
        description:
          'Also list workers that stopped or have not heartbeated within the stale interval ' +
          '(`live: false`): a worker that crashed shows up here.',
      },
      example: 'true',
    }),
});

export const Worker = z
  .object({
    id: z.string().openapi({ description: "The worker's WORKER_ID.", example: EXAMPLE_WORKER.id }),
    object: z.literal('worker'),
    hostname: z.string().openapi({ example: EXAMPLE_WORKER.hostname }),
    pid: z.int().openapi({ example: EXAMPLE_WORKER.pid }),
    provider: z
      .string()
      .openapi({ description: 'ONNX Runtime execution provider (`cpu`, `cuda`).', example: 'cuda' }),
    model: z.record(z.string(), z.unknown()).openapi({
      description: 'The text-to-image model the worker loaded, as it reported it at start.',
      example: EXAMPLE_WORKER.model,
    }),
    translator: z.record(z.string(), z.unknown()).nullable().openapi({
      description: 'The translation model it loaded; null when it has none.',
      example: EXAMPLE_WORKER.translator,
    }),
    current_generation_id: z.uuid().nullable().openapi({
      description: 'The generation it is running; null when idle.',
      example: EXAMPLE_WORKER.current_generation_id,
    }),
    jobs_succeeded: z.int().min(0).openapi({ description: 'Since it started.', example: 118 }),
    jobs_failed: z.int().min(0).openapi({ description: 'Since it started.', example: 2 }),
    started_at: isoTime,
    last_heartbeat_at: isoTime,
    stopped_at: isoTime.nullable().openapi({ description: 'Set when it shut down cleanly.' }),
    live: z.boolean().openapi({
      description: 'Heartbeated within WORKER_STALE_SECONDS and not stopped.',
      example: true,
    }),
  })
  .openapi('Worker', { example: EXAMPLE_WORKER });

export type WorkerResource = z.infer<typeof Worker>;

export const WorkerList = z
  .object({
    object: z.literal('list'),
    data: z.array(Worker).openapi({ description: 'Most recent heartbeat first.' }),
  })
  .openapi('WorkerList', { example: { object: 'list', data: [EXAMPLE_WORKER] } });
