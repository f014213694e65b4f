// Bad input, against the real API process: refused with problem+json and a stable code, never a
// 500, never stored changed. Each class from the malformed-request corpus has a test here; the
// property test (bad-input.property.test.ts) looks for the ones nobody thought of.
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { Registry } from 'prom-client';
import { closeHealthServer, healthServerUrl, startHealthServer } from '../shared/health-server.ts';
import { type Stack, startStack } from '../test/harness/stack.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';
import { ERROR_CATALOGUE, type ErrorCode, type ProblemDocument, toApiError } from './errors.ts';
import { checkedJsonText, MAX_NESTING, scanJson } from './json-body.ts';

let stack: Stack;
let keyId: string;

before(async () => {
  stack = await startStack('api_bad_input', { MAX_IN_FLIGHT_PER_KEY: '100000' });
  await stack.startApi();
  const key = await stack.database.db.selectFrom('api_keys').select('id').executeTakeFirstOrThrow();
  keyId = key.id;
});
after(async () => {
  await stack?.stop();
});

async function expectProblem(
  res: Response,
  status: number,
  code: ErrorCode,
  note = '',
): Promise<ProblemDocument> {
  const text = await res.text();
  assert.equal(res.status, status, `${note}: ${text}`);
  assert.equal(res.headers.get('content-type'), 'application/problem+json', note);
  const problem = JSON.parse(text) as ProblemDocument;
  assert.equal(problem.code, code, note);
  assert.equal(problem.status, status, note);
  assert.equal(ERROR_CATALOGUE[code].status, status, note);
  return problem;
}

const fields = (problem: ProblemDocument) => problem.errors?.map((e) => e.field);

const create = (body: string | Uint8Array, headers: Record<string, string> = {}) =>
  stack.request('/v1/generations', { method: 'POST', body, headers });

async function storedCount(): Promise<number> {
  const row = await stack.database.db
    .selectFrom('generations')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

test('NUL characters in any body string are 422 naming the field, and nothing is stored', async () => {
  const before = await storedCount();
  const cases: Array<[unknown, string]> = [
    [{ prompt: 'a cat\u0000' }, 'prompt'],
    [{ prompt: 'a cat', negative_prompt: '\u0000' }, 'negative_prompt'],
    [{ prompt: 'a cat', webhook_url: 'https://example.com/\u0000hook' }, 'webhook_url'],
    [{ prompt: 'a cat', webhook_url: 'https://example.com', webhook_events: ['\u0000'] }, 'webhook_events.0'],
    [{ prompt: 'a cat', 'x\u0000': 1 }, 'x\u0000'],
  ];
  for (const [body, field] of cases) {
    const problem = await expectProblem(await create(JSON.stringify(body)), 422, 'validation_failed', field);
    assert.deepEqual(fields(problem), [field]);
    assert.match(problem.errors?.[0]?.message ?? '', /NUL/);
  }
  // A raw NUL byte inside a JSON string is not JSON at all.
  await expectProblem(await create('{"prompt":"a\u0000"}'), 400, 'invalid_json');
  assert.equal(await storedCount(), before);
});

test('bodies that are not UTF-8 are 400 invalid_json, never stored with U+FFFD', async () => {
  const before = await storedCount();
  const head = Buffer.from('{"prompt":"caf');
  const tail = Buffer.from('"}');
  for (const bad of [
    [0xe9],
    [0xc0, 0xaf],
    [0xed, 0xa0, 0x80],
    [0xe2, 0x82],
    [0xff],
    [0xf4, 0x90, 0x80, 0x80],
  ]) {
    const body = new Uint8Array(Buffer.concat([head, Buffer.from(bad), tail]));
    const problem = await expectProblem(await create(body), 400, 'invalid_json', String(bad));
    assert.match(problem.detail, /UTF-8/);
  }
  assert.equal(await storedCount(), before);
});

test('unpaired surrogates are 422 naming the field; a real pair is stored exactly', async () => {
  for (const [body, field] of [
    ['{"prompt":"a\\ud800b"}', 'prompt'],
    ['{"prompt":"a","negative_prompt":"\\udc00"}', 'negative_prompt'],
    ['{"prompt":"\\ude00\\ud83d"}', 'prompt'],
  ] as const) {
    const problem = await expectProblem(await create(body), 422, 'validation_failed', body);
    assert.deepEqual(fields(problem), [field]);
    assert.match(problem.errors?.[0]?.message ?? '', /surrogate/);
  }
  const res = await create('{"prompt":"\\ud83d\\ude00 caf\\u00e9","negative_prompt":"ünïcödé"}');
  assert.equal(res.status, 202);
  const { id } = (await res.json()) as { id: string };
  const read = (await (await stack.request(`/v1/generations/${id}`)).json()) as Record<string, string>;
  assert.equal(read.prompt, '😀 café');
  assert.equal(read.negative_prompt, 'ünïcödé');
});

test('duplicate keys are refused (422 naming the key) whichever of the values is valid', async () => {
  const before = await storedCount();
  for (const [body, field] of [
    ['{"prompt":"","prompt":"a cat"}', 'prompt'],
    ['{"prompt":"a cat","prompt":""}', 'prompt'],
    ['{"prompt":"a cat","prompt":"a cat"}', 'prompt'],
    ['{"prompt":"a cat","pr\\u006fmpt":"a dog"}', 'prompt'],
    ['{"prompt":"a cat","steps":9999,"steps":20}', 'steps'],
    [
      '{"prompt":"a","webhook_url":"https://example.com","webhook_events":["x"],"webhook_events":["generation.completed"]}',
      'webhook_events',
    ],
  ] as const) {
    const problem = await expectProblem(await create(body), 422, 'validation_failed', body);
    assert.deepEqual(fields(problem), [field], body);
    assert.match(problem.errors?.[0]?.message ?? '', /more than once/);
  }
  assert.equal(await storedCount(), before);
});

const duplicateKeys = (text: string) => scanJson(text).duplicates;

test('scanJson finds repeated keys at any depth, decoding escapes, and nothing else', () => {
  assert.deepEqual(duplicateKeys('{"a":{"b":1,"b":2},"c":[{"d":1},{"d":2,"d":3}],"e":"\\"a\\""}'), [
    'a.b',
    'c.1.d',
  ]);
  assert.deepEqual(duplicateKeys('{"a":"a","b":["a","a"],"c":{"a":"b"},"d":{}}'), []);
  assert.deepEqual(duplicateKeys('[{"x":1},{"x":1}]'), []);
  assert.deepEqual(duplicateKeys('{"\\u0061":1,"a":2,"a\\"":3,"a\\\\":4,"a\\"":5}'), ['a', 'a"']);
  assert.deepEqual(duplicateKeys('"just a string"'), []);
  assert.equal(scanJson(`${'['.repeat(MAX_NESTING)}${']'.repeat(MAX_NESTING)}`).tooDeep, false);
  assert.equal(scanJson(`${'[{"a":'.repeat(MAX_NESTING)}1${'}]'.repeat(MAX_NESTING)}`).tooDeep, true);
  // A UTF-8 BOM is dropped as JSON parsers do; the text is what the validator parses.
  assert.equal(checkedJsonText(new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d])), '{}');
});

async function list(query: string) {
  return stack.request(`/v1/generations?${query}`);
}

test('a body nested deeper than any of ours is 422 at once, however deep', async () => {
  for (const depth of [MAX_NESTING + 1, 20_000]) {
    const body = `{"prompt":${'['.repeat(depth)}${']'.repeat(depth)}}`;
    const problem = await expectProblem(await create(body), 422, 'validation_failed', String(depth));
    assert.deepEqual(fields(problem), ['body']);
  }
});

test('list bounds outside 1970..9999 are 422 naming the field; the ends of the range are fine', async () => {
  for (const [name, value] of [
    ['created_after', '0000-01-01T00:00:00Z'],
    ['created_before', '1969-12-31T23:59:59.999Z'],
    ['created_after', '1970-01-01T00:30:00+01:00'],
    ['created_before', '9999-12-31T23:59:59-01:00'],
  ] as const) {
    const problem = await expectProblem(
      await list(`${name}=${encodeURIComponent(value)}`),
      422,
      'validation_failed',
      value,
    );
    assert.deepEqual(fields(problem), [name]);
    assert.match(problem.errors?.[0]?.message ?? '', /between 1970/);
  }
  for (const query of ['created_after=1970-01-01T00:00:00Z', 'created_before=9999-12-31T23:59:59.999Z']) {
    assert.equal((await list(query)).status, 200, query);
  }
});

/** A cursor carrying any instant and tagged as the API tags them: only the range check stands in the way. */
function forgedCursor(ms: bigint, scope: string) {
  const body = Buffer.alloc(25);
  body.writeUInt8(1, 0);
  body.writeBigInt64BE(ms, 1);
  Buffer.from(randomUUID().replaceAll('-', ''), 'hex').copy(body, 9);
  const tag = createHmac('sha256', 'easel list cursor v1')
    .update(body)
    .update(scope)
    .digest()
    .subarray(0, 12);
  return Buffer.concat([body, tag]).toString('base64url');
}

test('cursors the API did not hand out are 422 validation_failed naming cursor', async () => {
  for (let i = 0; i < 3; i++) {
    const res = await create(JSON.stringify({ prompt: `cursor ${i}` }));
    assert.equal(res.status, 202);
  }
  const page = (await (await list('limit=1')).json()) as { next_cursor: string };
  const real = page.next_cursor;
  assert.equal((await list(`cursor=${real}`)).status, 200);

  const otherKey = randomUUID();
  const made = [
    // The old format, decoding to an instant Postgres refuses.
    Buffer.from(JSON.stringify(['0000-01-01T00:00:00.000000Z', randomUUID()])).toString('base64url'),
    Buffer.from(JSON.stringify(['2026-02-30T00:00:00.000000Z', randomUUID()])).toString('base64url'),
    // Tagged correctly, instants no Date or timestamptz of ours holds.
    forgedCursor(-62167219200000n, keyId), // year 0000
    forgedCursor(253402300800000n, keyId), // year 10000
    forgedCursor(-(2n ** 63n), keyId),
    forgedCursor(2n ** 63n - 1n, keyId),
    // Another key's cursor, and a real one padded, truncated or in another alphabet.
    forgedCursor(1_700_000_000_000n, otherKey),
    `${real}A`,
    real.slice(0, -1),
    `${real}=`,
    `${real.slice(0, 10)}+/${real.slice(12)}`,
    '',
    'x'.repeat(10_000),
  ];
  // Every single-character change of the real cursor.
  for (let i = 0; i < real.length; i++) {
    const swapped = real[i] === 'A' ? 'B' : 'A';
    made.push(real.slice(0, i) + swapped + real.slice(i + 1));
  }
  for (const cursor of made) {
    const problem = await expectProblem(
      await list(`cursor=${encodeURIComponent(cursor)}`),
      422,
      'validation_failed',
      cursor,
    );
    assert.deepEqual(fields(problem), ['cursor'], cursor);
  }
  assert.equal(
    decodeCursor(forgedCursor(1_700_000_000_000n, keyId), keyId)?.createdAt,
    '2023-11-14T22:13:20.000Z',
  );
  assert.throws(() => encodeCursor({ createdAt: '0000-01-01T00:00:00Z', id: randomUUID() }), RangeError);
});

test("created_after a generation's own created_at does not list it: shown, stored and compared agree", async () => {
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await create(JSON.stringify({ prompt: `instant ${i}` }));
    ids.push(((await res.json()) as { id: string }).id);
  }
  for (const id of ids) {
    const shown = ((await (await stack.request(`/v1/generations/${id}`)).json()) as { created_at: string })
      .created_at;
    const stored = await stack.database.db
      .selectFrom('generations')
      .select('created_at')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    assert.equal(stored.created_at.toISOString(), shown);
    const ms = Date.parse(shown);
    const listed = async (query: string) => {
      const res = await list(`${query}&limit=100`);
      assert.equal(res.status, 200);
      return ((await res.json()) as { data: Array<{ id: string }> }).data.some((g) => g.id === id);
    };
    assert.equal(await listed(`created_after=${shown}`), false, `created_after=${shown}`);
    assert.equal(await listed(`created_before=${shown}`), false, `created_before=${shown}`);
    assert.equal(await listed(`created_after=${new Date(ms - 1).toISOString()}`), true);
    assert.equal(await listed(`created_before=${new Date(ms + 1).toISOString()}`), true);
  }
});

test('a header over the limit is 431 problem+json, and the service still answers', async () => {
  const res = await stack.request('/v1/generations', {
    method: 'POST',
    body: JSON.stringify({ prompt: 'a cat' }),
    headers: { 'Idempotency-Key': 'k'.repeat(20_000) },
  });
  const problem = await expectProblem(res, 431, 'headers_too_large');
  assert.match(problem.detail, /16384 bytes/);
  assert.equal((await fetch(`${stack.baseUrl()}/healthz`)).status, 200);
});

/** Raw bytes to a listener, its whole answer back (the connection is closed after an error). */
function rawRequest(
  url: string,
  request: string,
): Promise<{ status: number; headers: string; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(request, 'latin1'));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const [head = '', body = ''] = text.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), headers: head.toLowerCase(), body });
    });
  });
}

test('HTTP the parser refuses is 400 problem+json, on the API and on the metrics listeners', async () => {
  const metrics = await startHealthServer({ registry: new Registry(), port: 0, host: '127.0.0.1' });
  try {
    for (const url of [stack.baseUrl(), healthServerUrl(metrics)]) {
      for (const request of [
        'GET /v1/generations HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0000b\r\n\r\n',
        'GET /v1/generations HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n',
        'GET / HTTP/9.9\r\n\r\n',
      ]) {
        const answer = await rawRequest(url, request);
        assert.equal(answer.status, 400, request);
        assert.match(answer.headers, /content-type: application\/problem\+json/);
        const problem = JSON.parse(answer.body) as ProblemDocument;
        assert.equal(problem.code, 'bad_request');
        assert.equal(problem.status, 400);
      }
      const big = await rawRequest(
        url,
        `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`,
      );
      assert.equal(big.status, 431);
      assert.equal((JSON.parse(big.body) as ProblemDocument).code, 'headers_too_large');
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
    }
  } finally {
    await closeHealthServer(metrics);
  }
});

test('Postgres data exceptions (SQLSTATE class 22) become 422, never 500', () => {
  const nul = Object.assign(new Error('invalid byte sequence for encoding "UTF8": 0x00'), { code: '22021' });
  const range = Object.assign(new Error('date/time field value out of range'), { code: '22008' });
  for (const error of [nul, range, new Error('wrapped', { cause: range })]) {
    const problem = toApiError(error);
    assert.equal(problem?.code, 'validation_failed');
    assert.equal(problem?.status, 422);
    assert.doesNotMatch(problem?.detail ?? '', /UTF8|0x00|date\/time/);
  }
  assert.equal(toApiError(Object.assign(new Error('syntax'), { code: '42601' })), undefined);
});
