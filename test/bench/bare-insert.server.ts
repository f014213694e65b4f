// The reference point of the API benchmark: a bare Hono handler that parses the same JSON body
// with a minimal zod check and does the same single INSERT into generations (same columns, same
// Kysely pool size as the API), and nothing else: no auth lookup, no admission counts, no job,
// no queue position, no logging. Run as its own process, as the API is.
//   DATABASE_URL, API_KEY_ID (owner of the rows), PORT (0: any)
import { randomInt, randomUUID } from 'node:crypto';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { z } from 'zod';
import { createDb } from '../../db/connect.ts';
import { insertGeneration } from '../../db/generations.repository.ts';

const databaseUrl = process.env.DATABASE_URL;
const apiKeyId = process.env.API_KEY_ID;
if (!databaseUrl || !apiKeyId) throw new Error('DATABASE_URL and API_KEY_ID are required');

const body = z.object({
  prompt: z.string().trim().min(1).max(2000),
  negative_prompt: z.string().max(2000).default(''),
  width: z.int().min(64).max(2048).default(512),
  height: z.int().min(64).max(2048).default(512),
  steps: z.int().min(1).max(150).default(25),
  guidance_scale: z.number().min(0).max(30).default(7.5),
  num_images: z.int().min(1).max(4).default(1),
  seed: z.int().min(0).max(4_294_967_295).optional(),
});

// The API's createDb default pool (10), so the database side is sized alike.
const db = createDb(databaseUrl, { applicationName: 'easel-bench-bare' });

const app = new Hono();
app.post('/v1/generations', async (c) => {
  const parsed = body.safeParse(await c.req.json());
  if (!parsed.success) return c.json({ error: parsed.error.issues }, 400);
  const input = parsed.data;
  const row = await insertGeneration(db, {
    id: randomUUID(),
    api_key_id: apiKeyId,
    prompt: input.prompt,
    negative_prompt: input.negative_prompt,
    width: input.width,
    height: input.height,
    steps: input.steps,
    guidance_scale: input.guidance_scale,
    num_images: input.num_images,
    seed: input.seed ?? randomInt(0, 2 ** 32),
    requested_scheduler: null,
    requested_karras: null,
    webhook_url: null,
    webhook_events: null,
  });
  return c.json({ id: row.id, status: row.status, created_at: row.created_at.toISOString() }, 202);
});

const server = serve(
  { fetch: app.fetch, hostname: '127.0.0.1', port: Number(process.env.PORT ?? 0) },
  (info) => {
    process.stdout.write(
      `${JSON.stringify({ msg: 'bare listening', url: `http://127.0.0.1:${info.port}` })}\n`,
    );
  },
);

process.on('SIGTERM', () => {
  server.close(() => {
    void db.destroy().then(() => process.exit(0));
  });
  if ('closeAllConnections' in server) server.closeAllConnections();
});
