// The models the API accepts requests for, read from the models table and kept in memory for
// MODEL_CACHE_SECONDS (a create must not pay a round trip for it). An id the cache does not know is
// looked up at once (a model registered a moment ago), at most one lookup in flight. Each model's
// queue is made to exist before the first job goes into it: a model an operator registered may
// have had no worker yet to create it.
import type { PgBoss } from 'pg-boss';
import type { Db } from '../db/connect.ts';
import { listModels } from '../db/models.repository.ts';
import { ensureGenerationQueue } from '../db/queue.ts';
import type { Model } from '../db/types.ts';
import { singleFlight } from './batcher.ts';
import { apiError } from './errors.ts';

const MISS_RELOAD_MS = 250;

export interface ModelCatalog {
  /**
   * The model a create runs on: `requested`, else the default. Throws problem errors:
   * 422 model_not_found (unknown or retired), 422 model_required (several models, no default),
   * 503 no_models (none registered yet).
   */
  resolve(requested: string | undefined): Promise<Model>;
  /** Makes the model's queue exist (once per model per process). */
  ensureQueue(model: Model): Promise<void>;
}

export function createModelCatalog(options: {
  db: Db;
  boss: PgBoss;
  cacheMs: number;
  defaultModel?: string | undefined;
}): ModelCatalog {
  let models = new Map<string, Model>();
  let loadedAt = Number.NEGATIVE_INFINITY;
  const load = singleFlight(async () => {
    const rows = await listModels(options.db);
    models = new Map(rows.map((row) => [row.id, row]));
    loadedAt = Date.now();
  });
  const fresh = async () => {
    if (Date.now() - loadedAt >= options.cacheMs) await load();
  };
  const ensured = new Map<string, Promise<void>>();

  const servable = () => [...models.values()].filter((model) => model.retired_at === null);

  async function find(id: string): Promise<Model | undefined> {
    await fresh();
    // Not known yet: registered or announced since the last read (an unknown id sent in a loop
    // re-reads at most every MISS_RELOAD_MS).
    if (!models.has(id) && Date.now() - loadedAt >= MISS_RELOAD_MS) await load();
    return models.get(id);
  }

  return {
    async resolve(requested) {
      const id = requested ?? options.defaultModel;
      if (id !== undefined) {
        const model = await find(id);
        if (!model || model.retired_at !== null) {
          const available = servable().map((m) => m.id);
          throw apiError(
            'model_not_found',
            `${model ? 'Model is retired' : 'No such model'}: '${id}'.` +
              (available.length > 0 ? ` Available: ${available.join(', ')}.` : ''),
            {
              errors: [{ field: 'model', message: model ? 'is retired' : 'is not a model this service has' }],
            },
          );
        }
        return model;
      }
      await fresh();
      let candidates = servable();
      // None yet: a worker may have announced one since the last read.
      if (candidates.length === 0) {
        await load();
        candidates = servable();
      }
      const [only] = candidates;
      if (candidates.length === 1 && only) return only;
      if (candidates.length === 0) {
        throw apiError(
          'no_models',
          'No model is registered yet: start a worker, or register one with `easel models register`.',
        );
      }
      throw apiError(
        'model_required',
        `This service has several models and no default: name one (${candidates.map((m) => m.id).join(', ')}).`,
        { errors: [{ field: 'model', message: 'is required: there are several models and no default' }] },
      );
    },
    ensureQueue(model) {
      let done = ensured.get(model.id);
      if (!done) {
        done = ensureGenerationQueue(options.boss, model.id);
        ensured.set(model.id, done);
        done.catch(() => ensured.delete(model.id));
      }
      return done;
    },
  };
}
