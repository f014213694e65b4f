import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ProgressRecord } from '../db/generations.repository.ts';
import { createProgressReporter } from './progress.ts';

/** A reporter on a fake clock whose writes settle only when the test says so. */
function harness() {
  let clock = 0;
  const writes: { record: ProgressRecord; settled: boolean; settle: (error?: Error) => void }[] = [];
  const errors: unknown[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const reporter = createProgressReporter({
    now: () => clock,
    write: (record) =>
      new Promise<void>((resolve, reject) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        writes.push({
          record,
          settled: false,
          settle: (error) => {
            inFlight--;
            if (error) reject(error);
            else resolve();
          },
        });
      }),
    onError: (error) => errors.push(error),
  });
  return {
    reporter,
    writes,
    errors,
    maxInFlight: () => maxInFlight,
    advance(ms: number) {
      clock += ms;
    },
    /** Settles the oldest unsettled write and lets its continuation run. */
    async settleNext(error?: Error) {
      const next = writes.find((w) => !w.settled);
      assert.ok(next, 'no write to settle');
      next.settled = true;
      next.settle(error);
      await new Promise((resolve) => setImmediate(resolve));
    },
  };
}

test('writes the first step at once, then at most every 250 ms, and always the final step', async () => {
  const h = harness();
  h.reporter.step(1, 10);
  assert.deepEqual(
    h.writes.map((w) => w.record.step),
    [1],
  );
  await h.settleNext();
  for (let step = 2; step <= 9; step++) {
    h.advance(50);
    h.reporter.step(step, 10);
  }
  // Steps 2..5 fall inside 250 ms of the first write; step 6 (at 250 ms) is due.
  assert.deepEqual(
    h.writes.map((w) => w.record.step),
    [1, 6],
  );
  await h.settleNext();
  h.advance(1);
  h.reporter.step(10, 10);
  assert.deepEqual(
    h.writes.map((w) => w.record.step),
    [1, 6, 10],
    'the final step is written however soon it comes',
  );
  assert.equal(h.reporter.stepsDone, 10);
});

test('keeps one write in flight: a step due meanwhile waits, replaced by any later one', async () => {
  const h = harness();
  h.reporter.step(1, 100);
  for (let step = 2; step <= 20; step++) {
    h.advance(100);
    h.reporter.step(step, 100);
  }
  assert.equal(h.writes.length, 1, 'nothing else starts while the first write is in flight');
  await h.settleNext();
  assert.deepEqual(
    h.writes.map((w) => w.record.step),
    [1, 20],
    'only the freshest waiting step follows',
  );
  assert.equal(h.maxInFlight(), 1);
});

test('step_ms is a moving average of the time between steps; the first step has none', async () => {
  const h = harness();
  h.reporter.step(1, 50);
  assert.equal(h.writes[0]?.record.stepMs, null);
  await h.settleNext();
  for (let step = 2; step <= 50; step++) {
    h.advance(step <= 25 ? 10 : 30);
    h.reporter.step(step, 50);
  }
  await h.settleNext();
  const last = h.writes.at(-1)?.record;
  assert.equal(last?.step, 50);
  assert.ok(last?.stepMs && last.stepMs > 25 && last.stepMs <= 30, `stepMs ${last?.stepMs}`);
});

test('flush writes a dropped last step and resolves when nothing is in flight; errors are reported', async () => {
  const h = harness();
  h.reporter.step(1, 100);
  await h.settleNext(new Error('database down'));
  assert.equal(h.errors.length, 1, 'a failed write is reported, not thrown');
  h.advance(300);
  h.reporter.step(2, 100);
  h.advance(10);
  h.reporter.step(3, 100);
  assert.deepEqual(
    h.writes.map((w) => w.record.step),
    [1, 2],
  );
  let flushed = false;
  const flushing = h.reporter.flush().then(() => {
    flushed = true;
  });
  await h.settleNext();
  assert.deepEqual(
    h.writes.map((w) => w.record.step),
    [1, 2, 3],
    'the step the loop stopped at is written',
  );
  assert.equal(flushed, false, 'still waiting for that write');
  await h.settleNext();
  await flushing;
  assert.equal(flushed, true);
  await h.reporter.flush();
  assert.equal(h.writes.length, 3, 'nothing left to write');
});
