// A probe or a scrape must answer promptly even when what it asks hangs (a pool waiting for a
// connection to a Postgres that is gone): the caller stops waiting, the work is abandoned.

export class DeadlineExceeded extends Error {
  override name = 'DeadlineExceeded';
}

/** Settles like `work`, or rejects with DeadlineExceeded once `ms` have passed. */
export async function withDeadline<T>(work: Promise<T>, ms: number, what = 'operation'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceeded(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    // race subscribes to `work`, so its late rejection is handled, not an unhandled rejection.
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
