// What the API logs within a request: every line carries request_id (the child logger of the
// request, never the root one), and every line about one generation carries its generation_id,
// the access line included, so either id finds all of a request's or a generation's lines.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  GENERATION_QUEUED,
  GENERATION_REPLAYED,
  QUEUED_GENERATION_CANCELED,
  REQUEST,
} from '../shared/log-events.ts';
import { call, type LogLine, startTestApi, type TestApi } from './testing.ts';

let api: TestApi;
let alice: { id: string; key: string };

before(async () => {
  api = await startTestApi('api_logging');
  alice = await api.newKey('alice');
});
after(async () => {
  await api?.close();
});

const linesOf = (requestId: string) => api.logs.filter((l) => l.request_id === requestId);
const byMsg = (lines: LogLine[], msg: string) => lines.find((l) => l.msg === msg);

test('create, replay and cancel: every line of the request has request_id and generation_id', async () => {
  const created = await call(`${api.url}/v1/generations`, {
    key: alice.key,
    json: { prompt: 'logged' },
    headers: { 'X-Request-Id': 'log-create', 'Idempotency-Key': 'log-1' },
  });
  assert.equal(created.status, 202);
  const { id } = (await created.json()) as { id: string };
  const createLines = linesOf('log-create');
  assert.ok(byMsg(createLines, GENERATION_QUEUED), 'the create is logged');
  assert.ok(byMsg(createLines, REQUEST), 'and its access line');
  for (const line of createLines) {
    assert.equal(line.generation_id, id, `${line.msg} has generation_id`);
    assert.equal(line.api_key_id, alice.id, `${line.msg} has api_key_id`);
  }

  const replayed = await call(`${api.url}/v1/generations`, {
    key: alice.key,
    json: { prompt: 'logged' },
    headers: { 'X-Request-Id': 'log-replay', 'Idempotency-Key': 'log-1' },
  });
  assert.equal(replayed.headers.get('idempotent-replayed'), 'true');
  const replayLines = linesOf('log-replay');
  assert.ok(byMsg(replayLines, GENERATION_REPLAYED));
  for (const line of replayLines) assert.equal(line.generation_id, id, `${line.msg} names the original`);

  const canceled = await call(`${api.url}/v1/generations/${id}/cancel`, {
    method: 'POST',
    key: alice.key,
    headers: { 'X-Request-Id': 'log-cancel' },
  });
  assert.equal(canceled.status, 200);
  const cancelLines = linesOf('log-cancel');
  assert.ok(byMsg(cancelLines, QUEUED_GENERATION_CANCELED));
  for (const line of cancelLines) assert.equal(line.generation_id, id, `${line.msg} has generation_id`);

  // A cancel refused as finished still names the generation in its access line.
  const again = await call(`${api.url}/v1/generations/${id}/cancel`, {
    method: 'POST',
    key: alice.key,
    headers: { 'X-Request-Id': 'log-cancel-again' },
  });
  assert.equal(again.status, 200);
  assert.equal(byMsg(linesOf('log-cancel-again'), REQUEST)?.generation_id, id);

  const read = await call(`${api.url}/v1/generations/${id}`, {
    key: alice.key,
    headers: { 'X-Request-Id': 'log-read' },
  });
  assert.equal(read.status, 200);
  assert.equal(byMsg(linesOf('log-read'), REQUEST)?.generation_id, id);
});

test('every line the app logged so far belongs to a request', async () => {
  // A validation failure, an unknown route and an unauthenticated call add their own lines.
  await call(`${api.url}/v1/generations`, { key: alice.key, json: { prompt: '' } });
  await fetch(`${api.url}/nowhere`);
  await call(`${api.url}/v1/generations`);
  await fetch(`${api.url}/metrics`);
  assert.ok(api.logs.length > 0);
  for (const line of api.logs) {
    assert.equal(typeof line.request_id, 'string', `"${line.msg}" has request_id`);
  }
});
