// One process of simulated GPU workers for test/bench/queue-headroom.bench.ts. Each worker runs
// the queue contract by hand, one job at a time: fetch 1 → simulated GPU time → one UPDATE of the
// generations row → complete. A worker that finds the queue empty sleeps until pg-boss's NOTIFY
// (on its own LISTEN connection) or a short poll.
//   DATABASE_URL, WORKERS, GPU_MS, BOSS_POOL, DB_POOL, IDLE_POLL_MS
// Protocol (IPC): sends {type:'ready'}; receives {type:'start', startAt, stopAt} (epoch ms);
// sends {type:'result', ...} after its last job, then exits.
import { sql } from 'kysely';
import type { JobWithMetadata } from 'pg-boss';
import { pino } from 'pino';
import { createDb } from '../../db/connect.ts';
import { createListenConnection } from '../../db/listen-connection.ts';
import {
  createBoss,
  type GenerationJob,
  generationJob,
  generationQueue,
  PGBOSS_SCHEMA,
} from '../../db/queue.ts';
import { DEMO_MODEL_ID } from '../harness/models.ts';

// The demo model's queue: every generation here runs on it.
const GENERATION_QUEUE = generationQueue(DEMO_MODEL_ID);

const env = process.env;
const databaseUrl = env.DATABASE_URL ?? '';
const WORKERS = Number(env.WORKERS ?? 50);
const GPU_MS = Number(env.GPU_MS ?? 240);
const IDLE_POLL_MS = Number(env.IDLE_POLL_MS ?? 100);

export interface WorkerProcessResult {
  type: 'result';
  /** [epoch ms when the job was completed, generation id] */
  completions: [number, string][];
  /** [epoch ms when the worker became free, ms until it held its next job] */
  pickups: [number, number][];
  /** Times (ms) per job: [fetch, update, complete, the simulated GPU wait as actually slept]. */
  calls: [number, number, number, number][];
  emptyFetches: number;
  wakeups: number;
  errors: string[];
}

const send = (message: unknown) =>
  new Promise<void>((resolve, reject) =>
    process.send?.(message, (e: Error | null) => (e ? reject(e) : resolve())),
  );

const now = () => performance.timeOrigin + performance.now();
const logger = pino({ level: 'warn', name: 'bench-worker' }, pino.destination(2));

const boss = createBoss(databaseUrl, {
  applicationName: 'easel-bench-worker',
  max: Number(env.BOSS_POOL ?? 10),
});
const errors: string[] = [];
boss.on('error', (error) => errors.push(String(error)));
await boss.start();
const db = createDb(databaseUrl, { max: Number(env.DB_POOL ?? 5), applicationName: 'easel-bench-worker' });

// The channel pg-boss NOTIFYs when a job lands on a notify-enabled queue (its plans.notifyChannelSql).
const { rows } = await sql<{ channel: string }>`
  select 'pgboss_' || left(encode(sha224(${PGBOSS_SCHEMA}::bytea), 'hex'), 24) as channel`.execute(db);
const channel = rows[0]?.channel ?? '';
let waiting: (() => void)[] = [];
let wakeups = 0;
const wakeAll = () => {
  const woken = waiting;
  waiting = [];
  for (const wake of woken) wake();
};
const listener = createListenConnection({
  connectionString: databaseUrl,
  channels: [channel],
  applicationName: 'easel-bench-worker-listen',
  logger,
  onNotification(_channel, queue) {
    if (queue !== GENERATION_QUEUE) return;
    wakeups++;
    wakeAll();
  },
});
await listener.start();

/** Until a NOTIFY for the queue or the short poll, whichever comes first. */
const idle = () =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, IDLE_POLL_MS);
    function done() {
      clearTimeout(timer);
      waiting = waiting.filter((w) => w !== done);
      resolve();
    }
    waiting.push(done);
  });

const result: WorkerProcessResult = {
  type: 'result',
  completions: [],
  pickups: [],
  calls: [],
  emptyFetches: 0,
  wakeups: 0,
  errors,
};

async function runWorker(index: number, startAt: number, stopAt: number) {
  // Independent GPUs do not finish in lockstep: spread the first fetches over one job's length.
  const offset = startAt + (index / WORKERS) * GPU_MS - now();
  if (offset > 0) await new Promise((r) => setTimeout(r, offset));
  while (now() < stopAt) {
    const free = now();
    let job: JobWithMetadata<GenerationJob> | undefined;
    let fetchMs = 0;
    while (!job && now() < stopAt) {
      const t = performance.now();
      [job] = await boss.fetch<GenerationJob>(GENERATION_QUEUE, { batchSize: 1, includeMetadata: true });
      fetchMs = performance.now() - t;
      if (!job) {
        result.emptyFetches++;
        await idle();
      }
    }
    if (!job) break;
    result.pickups.push([free, now() - free]);
    const { generation_id: id } = generationJob.parse(job.data);
    // Simulated GPU time: this bench measures the queue, not the model, so a timer stands in for
    // the denoising loop (test/bench/worker-pipeline.bench.ts runs the real one).
    let t = performance.now();
    await new Promise((r) => setTimeout(r, GPU_MS));
    const sleptMs = performance.now() - t;
    t = performance.now();
    await db
      .updateTable('generations')
      .set({ status: 'succeeded', finished_at: sql`now()`, updated_at: sql`now()` })
      .where('id', '=', id)
      .execute();
    const updateMs = performance.now() - t;
    t = performance.now();
    await boss.complete(GENERATION_QUEUE, job.id);
    result.calls.push([fetchMs, updateMs, performance.now() - t, sleptMs]);
    result.completions.push([now(), id]);
  }
}

process.on('message', (message: { type: string; startAt: number; stopAt: number }) => {
  if (message.type !== 'start') return;
  void (async () => {
    const workers = Array.from({ length: WORKERS }, (_, i) =>
      runWorker(i, message.startAt, message.stopAt).catch((error: unknown) => {
        errors.push(String(error));
      }),
    );
    await Promise.all(workers);
    result.wakeups = wakeups;
    wakeAll();
    await send(result);
    await listener.close();
    await boss.stop({ graceful: false });
    await db.destroy();
    process.exit(0);
  })();
});
await send({ type: 'ready' });
