import assert from 'node:assert/strict';
import { test } from 'node:test';
import { queuedEta, runningEta } from './eta.ts';

const NOW = Date.parse('2026-11-28T10:00:00.000Z');

test('running: the remaining steps at the measured step time', () => {
  assert.equal(
    runningEta({ progress_step: 10, progress_total: 30, step_ms: 50 }, NOW),
    '2026-11-28T10:00:01.000Z',
  );
  assert.equal(
    runningEta({ progress_step: 30, progress_total: 30, step_ms: 50 }, NOW),
    '2026-11-28T10:00:00.000Z',
  );
  assert.equal(
    runningEta({ progress_step: 1, progress_total: 30, step_ms: null }, NOW),
    null,
    'not yet timed',
  );
  assert.equal(runningEta({ progress_step: null, progress_total: null, step_ms: null }, NOW), null);
});

test("queued: this job and those ahead, at the model's recent mean run time, shared among its live workers", () => {
  assert.equal(queuedEta(0, { avgRunMs: 2000, workers: 1 }, NOW), '2026-11-28T10:00:02.000Z');
  assert.equal(queuedEta(3, { avgRunMs: 2000, workers: 2 }, NOW), '2026-11-28T10:00:04.000Z');
  assert.equal(
    queuedEta(1, { avgRunMs: 1000, workers: 0 }, NOW),
    null,
    'no live worker of the model: nothing says when one starts',
  );
  assert.equal(queuedEta(5, { avgRunMs: null, workers: 3 }, NOW), null, 'nothing to average yet');
});
