// Natural batching: work that arrives while earlier work is in flight waits and goes together
// in the next batch. An idle service runs each item at once (no timer, no added latency); a busy
// one turns N round trips to Postgres into one, which is what lets the create path keep up
// with a load that would otherwise queue on the connection pool.

export interface BatcherOptions {
  /** Batches running at once; each holds one pooled connection while it runs. */
  concurrency: number;
  /** Most items in one batch (bounds statement size and the blast radius of a failure). */
  maxBatch: number;
}

/**
 * `run` gets the items of one batch and returns one result per item, in order. If it throws,
 * every item of that batch rejects with the error.
 */
export function createBatcher<In, Out>(
  run: (items: readonly In[]) => Promise<readonly Out[]>,
  options: BatcherOptions,
): (item: In) => Promise<Out> {
  const waiting: { item: In; resolve: (out: Out) => void; reject: (error: unknown) => void }[] = [];
  let running = 0;

  const pump = () => {
    while (running < options.concurrency && waiting.length > 0) {
      const batch = waiting.splice(0, options.maxBatch);
      running++;
      run(batch.map((w) => w.item))
        .then((results) => {
          if (results.length !== batch.length) {
            throw new Error(`batch returned ${results.length} results for ${batch.length} items`);
          }
          for (const [i, w] of batch.entries()) w.resolve(results[i] as Out);
        })
        .catch((error: unknown) => {
          for (const w of batch) w.reject(error);
        })
        .finally(() => {
          running--;
          pump();
        });
    }
  };

  return (item) =>
    new Promise<Out>((resolve, reject) => {
      waiting.push({ item, resolve, reject });
      pump();
    });
}

/**
 * Single-flight: callers that arrive while a call is running share its result instead of
 * starting another. Nothing is kept once it settles, so a value is at most one call's duration
 * older than the moment it was asked for.
 */
export function singleFlight<T>(fn: () => Promise<T>): () => Promise<T> {
  let current: Promise<T> | undefined;
  return () => {
    current ??= fn().finally(() => {
      current = undefined;
    });
    return current;
  };
}
