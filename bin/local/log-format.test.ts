import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatLogLine } from './log-format.ts';

// A local time, so the expected clock is the same in every time zone.
const time = new Date(2026, 10, 28, 14, 2, 7, 45).getTime();

test('a pino line becomes time, level, service, message and the other fields', () => {
  const line = JSON.stringify({
    level: 30,
    time,
    pid: 4242,
    hostname: 'box',
    name: 'easel-api',
    request_id: '3f1e',
    generation_id: '0b6c',
    status: 202,
    msg: 'generation created',
  });
  assert.equal(
    formatLogLine('api', line, { serviceWidth: 8 }),
    '14:02:07.045 INFO  api      generation created request_id=3f1e generation_id=0b6c status=202',
  );
});

test('values that need it are quoted; objects are compact JSON; service-wide fields are left out', () => {
  const line = JSON.stringify({
    level: 40,
    time,
    service: 'easel-worker',
    worker_id: 'box-4242',
    reason: 'two words',
    empty: '',
    checks: { database: 'ok' },
    msg: 'slow',
  });
  assert.equal(
    formatLogLine('worker', line),
    '14:02:07.045 WARN  worker slow reason="two words" empty="" checks={"database":"ok"}',
  );
});

test('an error shows its message inline and its stack trace indented below', () => {
  const line = JSON.stringify({
    level: 50,
    time,
    err: {
      type: 'Error',
      message: 'connection refused',
      stack: 'Error: connection refused\n    at connect (db.ts:1:1)',
    },
    msg: 'query failed',
  });
  assert.equal(
    formatLogLine('api', line),
    [
      '14:02:07.045 ERROR api query failed err="connection refused"',
      '    Error: connection refused',
      '    at connect (db.ts:1:1)',
    ].join('\n'),
  );
});

test('colours when asked: the level in its colour, the rest dimmed', () => {
  const out = formatLogLine('api', JSON.stringify({ level: 50, time, msg: 'boom', code: 'x' }), {
    color: true,
  });
  assert.equal(
    out,
    '\x1b[90m14:02:07.045\x1b[0m \x1b[31mERROR\x1b[0m \x1b[36mapi\x1b[0m boom \x1b[90mcode=x\x1b[0m',
  );
});

test('lines that are not pino JSON are shown as they are, under the service name', () => {
  assert.equal(
    formatLogLine('worker', '(node:12) ExperimentalWarning: something', { serviceWidth: 8 }),
    `${' '.repeat(18)} worker   (node:12) ExperimentalWarning: something`,
  );
  assert.equal(formatLogLine('api', '{not json'), `${' '.repeat(18)} api {not json`);
  assert.equal(formatLogLine('api', '{"a":1}'), `${' '.repeat(18)} api {"a":1}`);
});
