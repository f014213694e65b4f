// Generations accepted before the service had several models wait in a queue no worker of this
// version fetches. The API, which knows the default model, moves them to its queue at start and
// then every minute (a legacy job an old worker held can fall back to waiting later), and wakes
// that model's workers. Until a default model resolves (none registered yet, or several and no
// DEFAULT_MODEL) they stay where they are, and the log says why once.
import type { PgBoss } from 'pg-boss';
import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import { adoptLegacyGenerations } from '../db/legacy-queue.ts';
import { createQueueWaker } from '../db/queue.ts';
import type { ModelCatalog } from './model-catalog.ts';

export function startLegacyAdoption(options: {
  db: Db;
  boss: PgBoss;
  models: ModelCatalog;
  logger: Logger;
  intervalMs?: number;
}): { stop(): Promise<void> } {
  const { db, boss, models, logger } = options;
  const waker = createQueueWaker(db, (error) => logger.warn({ err: error }, 'queue wake-up failed'));
  let warned = false;
  let running: Promise<void> | undefined;

  async function pass(): Promise<void> {
    let model: Awaited<ReturnType<ModelCatalog['resolve']>>;
    try {
      model = await models.resolve(undefined);
    } catch (error) {
      if (!warned) {
        warned = true;
        logger.info(
          { reason: (error as Error).message },
          'no default model: generations from before models existed wait until one resolves',
        );
      }
      return;
    }
    await models.ensureQueue(model);
    let moved = 0;
    for (let batch = await adoptLegacyGenerations(db, boss, model.id); batch > 0; ) {
      moved += batch;
      batch = await adoptLegacyGenerations(db, boss, model.id);
    }
    if (moved > 0) {
      logger.info(
        { generations: moved, model: model.id },
        'generations from before models moved to the default model',
      );
      await waker.poke(model.id);
    }
  }

  const run = () => {
    running ??= pass()
      .catch((error: unknown) =>
        logger.warn({ err: error }, 'moving generations from before models failed; retrying'),
      )
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  void run();
  const timer = setInterval(run, options.intervalMs ?? 60_000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
