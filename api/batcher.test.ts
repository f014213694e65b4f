import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createBatcher, singleFlight } from './batcher.ts';

/** A run function whose batches the test finishes by hand, so batch formation is deterministic. */
function manualRun() {
  const batches: {
    items: readonly number[];
    finish(results?: readonly string[]): void;
    fail(e: Error): void;
  }[] = [];
  const run = (items: readonly number[]) =>
    new Promise<readonly string[]>((resolve, reject) => {
      batches.push({
        items,
        finish: (results = items.map((i) => `r${i}`)) => resolve(results),
        fail: reject,
      });
    });
  return { batches, run };
}

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

test('an idle batcher runs an item at once; items arriving meanwhile go together in the next batch', async () => {
  const { batches, run } = manualRun();
  const submit = createBatcher(run, { concurrency: 1, maxBatch: 10 });
  const first = submit(1);
  assert.deepEqual(
    batches.map((b) => b.items),
    [[1]],
  );
  const rest = [2, 3, 4].map((i) => submit(i));
  assert.equal(batches.length, 1, 'nothing else starts while the only slot is busy');
  batches[0]?.finish();
  assert.equal(await first, 'r1');
  await tick();
  assert.deepEqual(batches[1]?.items, [2, 3, 4]);
  batches[1]?.finish();
  assert.deepEqual(await Promise.all(rest), ['r2', 'r3', 'r4']);
});

test('concurrency and maxBatch bound what runs at once and how much goes in one batch', async () => {
  const { batches, run } = manualRun();
  const submit = createBatcher(run, { concurrency: 2, maxBatch: 3 });
  const all = Array.from({ length: 9 }, (_, i) => submit(i));
  assert.deepEqual(
    batches.map((b) => b.items),
    [[0], [1]],
  );
  batches[0]?.finish();
  await tick();
  assert.deepEqual(batches[2]?.items, [2, 3, 4]);
  batches[1]?.finish();
  await tick();
  assert.deepEqual(batches[3]?.items, [5, 6, 7]);
  batches[2]?.finish();
  await tick();
  assert.deepEqual(batches[4]?.items, [8]);
  batches[3]?.finish();
  batches[4]?.finish();
  assert.deepEqual(await Promise.all(all), ['r0', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'r7', 'r8']);
});

test('a failed batch rejects its own items only, and the batcher goes on', async () => {
  const { batches, run } = manualRun();
  const submit = createBatcher(run, { concurrency: 1, maxBatch: 10 });
  const first = submit(1);
  const second = [submit(2), submit(3)];
  batches[0]?.fail(new Error('connection lost'));
  await assert.rejects(first, /connection lost/);
  await tick();
  batches[1]?.finish();
  assert.deepEqual(await Promise.all(second), ['r2', 'r3']);
});

test('a batch that answers the wrong number of results rejects every item of it', async () => {
  const { batches, run } = manualRun();
  const submit = createBatcher(run, { concurrency: 1, maxBatch: 10 });
  const one = submit(1);
  batches[0]?.finish(['r1', 'extra']);
  await assert.rejects(one, /2 results for 1 items/);
});

test('singleFlight shares one call among callers that arrive while it runs, then starts afresh', async () => {
  let calls = 0;
  let release: (value: number) => void = () => {};
  const shared = singleFlight(
    () =>
      new Promise<number>((resolve) => {
        calls++;
        release = resolve;
      }),
  );
  const a = shared();
  const b = shared();
  release(7);
  assert.deepEqual(await Promise.all([a, b]), [7, 7]);
  assert.equal(calls, 1);
  const c = shared();
  release(8);
  assert.equal(await c, 8);
  assert.equal(calls, 2);
});
