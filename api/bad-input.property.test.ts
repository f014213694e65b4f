// Property-based: arbitrary create bodies, list queries and path parameters against the real API
// process. Whatever arrives, the answer is never a 5xx; an error is problem+json with a code from
// the catalogue and the status that code promises; an accepted body is stored as sent; and the
// service still answers afterwards. Bounded in runs and time (BAD_INPUT_RUNS to change); a failure
// prints fast-check's seed and path, which reproduce it (fc.assert's `seed` and `path` options).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { type Stack, startStack } from '../test/harness/stack.ts';
import { ERROR_CATALOGUE, ERROR_CODES, type ErrorCode } from './errors.ts';
import { CreateGenerationRequest } from './generations.schemas.ts';
import { scanJson } from './json-body.ts';
import { preferredWaitSeconds } from './sync-wait.ts';

const RUNS = Number(process.env.BAD_INPUT_RUNS ?? 150);
const TIME_LIMIT_MS = 40_000;

let stack: Stack;
const serverErrors: Array<Record<string, unknown>> = [];
let existingId: string;

before(async () => {
  stack = await startStack('api_bad_input_property', { MAX_IN_FLIGHT_PER_KEY: '1000000' });
  stack.logs.on('line', (record) => {
    if (typeof record.level === 'number' && record.level >= 50) serverErrors.push(record);
  });
  await stack.startApi();
  const res = await stack.request('/v1/generations', {
    method: 'POST',
    body: JSON.stringify({ prompt: 'an existing generation' }),
  });
  assert.equal(res.status, 202);
  existingId = ((await res.json()) as { id: string }).id;
});
after(async () => {
  await stack?.stop();
});

// Characters that have broken services: NUL and other controls, lone surrogates, quotes,
// backslashes, percent signs, astral characters, and the rest of Unicode.
const char = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 0x10ffff }).map((c) => String.fromCodePoint(c)) },
  { weight: 1, arbitrary: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)) },
  { weight: 1, arbitrary: fc.constantFrom('\u0000', '\u001f', '"', '\\', '%', '\u2028', '😀', 'é', ' ') },
);
const nasty = fc.oneof(
  { weight: 5, arbitrary: fc.string({ unit: char, maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: char, minLength: 1990, maxLength: 2100 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '',
      ' ',
      'null',
      '0000-01-01T00:00:00Z',
      'https://example.com/\u0000',
      'http://[::1]/',
      'euler_a',
      'generation.completed',
    ),
  },
);
const number = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -0, 1e308, -1e308, 2 ** 53, 2 ** 64, 4_294_967_296, 64, 2048, 8, 1.5),
);
const value: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: nasty },
  { weight: 3, arbitrary: number },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: fc.array(nasty, { maxLength: 5 }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);
// The body's own field names, so the fuzzer follows the schema when a field is added.
const FIELDS = Object.keys(CreateGenerationRequest.shape);
const validBase = fc.record(
  {
    prompt: fc.oneof(
      fc.constant('a lighthouse at dusk'),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }),
    ),
    negative_prompt: fc.string({ unit: 'grapheme', maxLength: 20 }),
    width: fc.constantFrom(64, 128, 512),
    height: fc.constantFrom(64, 128, 512),
    steps: fc.integer({ min: 1, max: 150 }),
    seed: fc.integer({ min: 0, max: 4_294_967_295 }),
    scheduler: fc.constantFrom('euler', 'ddim', 'lcm'),
  },
  { requiredKeys: ['prompt'] },
);
const createBodyObject: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  // Any fields, any values.
  fc
    .tuple(
      validBase,
      fc.dictionary(fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...FIELDS) }, nasty), value, {
        maxKeys: 3,
      }),
    )
    .map(([base, overrides]) => ({ ...base, ...overrides })),
  // A valid body with one free-text field made of anything: what must be stored exactly, or refused.
  fc
    .tuple(validBase, fc.constantFrom('prompt', 'negative_prompt', 'webhook_url'), nasty)
    .map(([base, field, text]) => ({
      ...base,
      [field]: field === 'webhook_url' ? `https://example.com/${text}` : `x${text}`,
    })),
);

interface CreateCase {
  body: Uint8Array;
  contentType: string | undefined;
  idempotencyKey: string | undefined;
  prefer: string | undefined;
}

const encoder = new TextEncoder();
/** JSON.stringify escapes lone surrogates (well-formed JSON.stringify), so the bytes are UTF-8. */
const jsonBytes = (v: unknown) => encoder.encode(JSON.stringify(v));

const createBody = fc.oneof(
  { weight: 6, arbitrary: createBodyObject.map(jsonBytes) },
  // A duplicate key spliced in, before or after the original.
  {
    weight: 2,
    arbitrary: fc
      .tuple(createBodyObject, fc.constantFrom(...FIELDS), value, fc.boolean())
      .map(([body, key, extra, first]) => {
        const text = JSON.stringify(body);
        const member = `${JSON.stringify(key)}:${JSON.stringify(extra) ?? 'null'}`;
        return encoder.encode(first ? `{${member},${text.slice(1)}` : `${text.slice(0, -1)},${member}}`);
      }),
  },
  // Bytes spliced into valid JSON: malformed UTF-8, NUL, anything.
  {
    weight: 2,
    arbitrary: fc
      .tuple(createBodyObject, fc.uint8Array({ minLength: 1, maxLength: 6 }), fc.nat())
      .map(([body, bytes, at]) => {
        const json = jsonBytes(body);
        const cut = at % (json.length + 1);
        return new Uint8Array([...json.subarray(0, cut), ...bytes, ...json.subarray(cut)]);
      }),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  // Deep nesting, where a recursive walk would run out of stack.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('prompt', 'webhook_events', 'x'), fc.integer({ min: 1, max: 20_000 }))
      .map(([key, depth]) => encoder.encode(`{"${key}":${'[{"a":'.repeat(depth)}1${'}]'.repeat(depth)}}`)),
  },
  { weight: 1, arbitrary: fc.jsonValue().map(jsonBytes) },
);

// Header values fetch can send: visible ASCII, spaces and tabs inside, latin-1 (obs-text).
const headerValue = fc
  .string({
    unit: fc.oneof(
      fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
      fc.integer({ min: 0xa0, max: 0xff }).map((c) => String.fromCharCode(c)),
      fc.constantFrom(' ', '\t'),
    ),
    maxLength: 300,
  })
  .map((s) => s.trim());

const createCase: fc.Arbitrary<CreateCase> = fc.record({
  body: createBody,
  contentType: fc.oneof(
    { weight: 8, arbitrary: fc.constant('application/json') },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        undefined,
        'application/json; charset=utf-8',
        'application/json; charset=latin1',
        'text/plain',
        'application/merge-patch+json',
        'multipart/form-data; boundary=x',
      ),
    },
  ),
  idempotencyKey: fc.option(
    fc.oneof(headerValue, fc.constant('k'.repeat(300)), fc.constant('k'.repeat(20_000))),
    { freq: 4 },
  ),
  // Never a wait the server would honour: nothing here finishes a generation.
  prefer: fc.option(
    headerValue.filter((v) => preferredWaitSeconds(v) === undefined),
    { freq: 5 },
  ),
});

interface Answer {
  status: number;
  contentType: string | null;
  body: string;
}

async function send(path: string, init: RequestInit): Promise<Answer> {
  const res = await stack.request(path, init);
  return { status: res.status, contentType: res.headers.get('content-type'), body: await res.text() };
}

/** The invariants every answer keeps; returns the parsed body. */
function checkAnswer(answer: Answer, what: string): unknown {
  assert.ok(answer.status < 500, `${what} → ${answer.status} ${answer.body}`);
  if (answer.status < 400) return answer.status === 302 ? undefined : JSON.parse(answer.body);
  assert.equal(answer.contentType, 'application/problem+json', `${what} → ${answer.status}`);
  const problem = JSON.parse(answer.body) as { code: ErrorCode; status: number; errors?: unknown[] };
  assert.ok(ERROR_CODES.includes(problem.code), `${what}: unknown code ${problem.code}`);
  assert.equal(problem.status, answer.status, what);
  assert.equal(ERROR_CATALOGUE[problem.code].status, answer.status, `${what}: ${problem.code}`);
  // Validation names what is wrong (only the database's last-resort refusal would not).
  if (problem.code === 'validation_failed') assert.ok(problem.errors?.length, `${what}: ${answer.body}`);
  return problem;
}

const options = { numRuns: RUNS, interruptAfterTimeLimit: TIME_LIMIT_MS, markInterruptAsFailure: false };

async function stillAnswers() {
  assert.equal((await fetch(`${stack.baseUrl()}/healthz`)).status, 200);
  const res = await stack.request('/v1/generations', {
    method: 'POST',
    body: JSON.stringify({ prompt: 'ok' }),
  });
  assert.equal(res.status, 202);
}

test('create: any body and headers → never 5xx, problem+json with a catalogue code, or stored as sent', async () => {
  await fc.assert(
    fc.asyncProperty(createCase, async (c) => {
      const headers: Record<string, string> = {};
      if (c.contentType) headers['Content-Type'] = c.contentType;
      if (c.idempotencyKey !== undefined && c.idempotencyKey !== null)
        headers['Idempotency-Key'] = c.idempotencyKey;
      if (c.prefer !== undefined && c.prefer !== null) headers.Prefer = c.prefer;
      const answer = await send('/v1/generations', { method: 'POST', body: c.body, headers });
      const resource = checkAnswer(answer, `POST ${Buffer.from(c.body).toString('latin1')}`);
      if (answer.status === 200 || answer.status === 202) {
        // Accepted: the bytes were UTF-8 JSON, and what is stored is what was sent (prompt trimmed).
        const sent = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(c.body)) as Record<
          string,
          unknown
        >;
        const strings: string[] = [];
        JSON.parse(JSON.stringify(sent), (key, v) => {
          strings.push(key);
          if (typeof v === 'string') strings.push(v);
          return v;
        });
        for (const s of strings)
          assert.ok(s.isWellFormed() && !s.includes('\u0000'), `accepted ${JSON.stringify(s)}`);
        assert.deepEqual(
          scanJson(new TextDecoder().decode(c.body)).duplicates,
          [],
          'accepted duplicate keys',
        );
        const stored = resource as { id: string; prompt: string; negative_prompt: string };
        assert.equal(stored.prompt, (sent.prompt as string).trim());
        assert.equal(stored.negative_prompt, sent.negative_prompt ?? '');
        const read = await send(`/v1/generations/${stored.id}`, {});
        assert.equal(read.status, 200);
        assert.equal((JSON.parse(read.body) as { prompt: string }).prompt, stored.prompt);
      }
    }),
    options,
  );
  await stillAnswers();
});

const pctBytes = fc
  .uint8Array({ minLength: 1, maxLength: 8 })
  .map((bytes) => [...bytes].map((b) => `%${b.toString(16).padStart(2, '0')}`).join(''));
/** How a value appears in a URL: escaped properly, as raw percent-escaped bytes, or as is. */
const urlPart = (arbitrary: fc.Arbitrary<string>) =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: arbitrary.map((s) => encodeURIComponent(s.replace(/[\ud800-\udfff]/g, '\ufffd'))),
    },
    { weight: 1, arbitrary: pctBytes },
    { weight: 1, arbitrary: arbitrary.map((s) => s.replace(/[#?/\s]/g, '')) },
  );
const YEAR_0 = Date.parse('0000-01-01T00:00:00Z');
const YEAR_9999 = Date.parse('9999-01-01T00:00:00Z');
const instantText = fc
  .tuple(
    fc.oneof(
      fc.integer({ min: -8.64e15, max: 8.64e15 }),
      // Year 0 (Postgres has none), around the epoch, years 9999 and 10000.
      fc.integer({ min: YEAR_0, max: YEAR_0 + 31_535_999_999 }),
      fc.integer({ min: -1e11, max: 1e11 }),
      fc.integer({ min: YEAR_9999, max: YEAR_9999 + 6e10 }),
    ),
    fc.constantFrom('Z', '+00:00', '-01:00', '+14:00', '', '+2400'),
  )
  .map(([ms, zone]) => new Date(ms).toISOString().replace('Z', zone));
const cursorText = fc.oneof(
  fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b).toString('base64url')),
  // The shape cursors once had: [created_at to the microsecond, id].
  fc
    .tuple(
      instantText.map((t) => t.replace(/\.(\d{3})Z$/, '.$1000Z')),
      fc.uuid(),
    )
    .map((pair) => Buffer.from(JSON.stringify(pair)).toString('base64url')),
  nasty,
);
const queryPair = fc.oneof(
  { weight: 1, arbitrary: fc.tuple(fc.constant('limit'), urlPart(fc.oneof(nasty, number.map(String)))) },
  { weight: 2, arbitrary: fc.tuple(fc.constant('cursor'), urlPart(cursorText)) },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.constant('status'),
      urlPart(fc.oneof(nasty, fc.constantFrom('queued', 'queued,running', 'x,'))),
    ),
  },
  {
    weight: 4,
    arbitrary: fc.tuple(
      fc.constantFrom('created_after', 'created_before'),
      urlPart(fc.oneof({ weight: 4, arbitrary: instantText }, nasty)),
    ),
  },
  { weight: 1, arbitrary: fc.tuple(urlPart(nasty), urlPart(nasty)) },
);

test('list: any query → never 5xx, and problem+json with a catalogue code', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(queryPair, { maxLength: 3 }), async (pairs) => {
      const query = pairs.map(([k, v]) => `${k}=${v}`).join('&');
      const answer = await send(`/v1/generations?${query}`, {});
      const page = checkAnswer(answer, `GET ?${query}`) as { data?: unknown[] } | undefined;
      if (answer.status === 200) assert.ok(Array.isArray(page?.data));
    }),
    options,
  );
  await stillAnswers();
});

const idText = fc.oneof(
  fc.uuid(),
  fc.constant('EXISTING'),
  fc.uuid().map((id) => id.toUpperCase()),
  fc.uuid().map((id) => `{${id}}`),
  fc.uuid().map((id) => `${id}\u0000`),
  nasty,
);
const indexText = fc.oneof(
  number.map(String),
  fc.constantFrom('0', '-0', '1e400', '0x1', '99999999999999999999', '', 'NaN', '١'),
  nasty,
);
const pathCase = fc.tuple(
  fc.constantFrom(
    ['GET', '/v1/generations/{id}'],
    ['GET', '/v1/generations/{id}/images/{index}'],
    ['POST', '/v1/generations/{id}/cancel'],
    ['GET', '/v1/generations/{id}/webhook-deliveries'],
    ['POST', '/v1/webhook-deliveries/{id}/redeliver'],
  ),
  urlPart(idText),
  urlPart(indexText),
);

test('path parameters: anything → never 5xx, and problem+json with a catalogue code', async () => {
  await fc.assert(
    fc.asyncProperty(pathCase, async ([[method, template], id, index]) => {
      const path = template.replace('{id}', id === 'EXISTING' ? existingId : id).replace('{index}', index);
      checkAnswer(await send(path, { method }), `${method} ${path}`);
    }),
    options,
  );
  await stillAnswers();
  assert.deepEqual(serverErrors, [], 'the API logged no errors');
});
