// What an integrator does with openapi.yaml: generate TypeScript types (openapi-typescript), write
// a client against them (openapi-fetch), type-check it strictly, and run it against the live API.
// The type-check ties the program to the document; the run ties the document to the server, so a
// field the two disagree on fails one or the other.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import openapiTS, { astToString, type OpenAPI3 } from 'openapi-typescript';
import { parse } from 'yaml';
import { runToEnd } from '../bin/testing.ts';
import { DEMO_MODEL_ID } from './harness/models.ts';
import { type Stack, startStack } from './harness/stack.ts';

const root = fileURLToPath(new URL('../', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

let stack: Stack;
let dir = '';
/** openapi.yaml as it is on disk when the test runs. */
let spec: Record<string, unknown>;
let hasCancel = false;

before(async () => {
  spec = parse(await readFile(join(root, 'openapi.yaml'), 'utf8')) as Record<string, unknown>;
  const paths = spec.paths as Record<string, Record<string, unknown>>;
  hasCancel = paths['/v1/generations/{id}/cancel']?.post !== undefined;
  dir = await mkdtemp(join(tmpdir(), 'easel-sdk-'));
  stack = await startStack('sdk');
  // No worker: every generation stays queued, so queue positions and the list are exact.
  await stack.startApi();
});

after(async () => {
  await stack?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }) {
  return runToEnd({ command, args, ...options });
}

/**
 * A self-contained project folder: the generated types, the program, a strict tsconfig. Its
 * node_modules is a link to this repository's, so openapi-fetch and @types/node resolve as in
 * any project that installed them (nothing here names a path of this machine).
 */
async function writeProject(project: string, document: Record<string, unknown>) {
  await rm(project, { recursive: true, force: true });
  await mkdir(project, { recursive: true });
  await symlink(join(root, 'node_modules'), join(project, 'node_modules'), 'dir');
  // defaultNonNullable off: openapi-typescript 7 otherwise makes every request field that has a
  // server default (width, steps, …) required in the request body type (openapi-ts/openapi-typescript#1741).
  const ast = await openapiTS(structuredClone(document) as unknown as OpenAPI3, {
    defaultNonNullable: false,
  });
  await writeFile(join(project, 'schema.ts'), astToString(ast));
  await writeFile(join(project, 'program.ts'), program(hasCancel));
  await writeFile(join(project, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  await writeFile(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'es2024',
        lib: ['es2024'],
        module: 'nodenext',
        moduleResolution: 'nodenext',
        types: ['node'],
        strict: true,
        noUncheckedIndexedAccess: true,
        exactOptionalPropertyTypes: true,
        noEmit: true,
        allowImportingTsExtensions: true,
        erasableSyntaxOnly: true,
        verbatimModuleSyntax: true,
        skipLibCheck: true,
      },
      files: ['program.ts'],
    }),
  );
}

function typecheck(project: string) {
  return run(process.execPath, [tsc, '-p', 'tsconfig.json', '--pretty', 'false'], { cwd: project });
}

/** The integrator's program. Every field it prints is one the document promises and the API must send. */
function program(withCancel: boolean): string {
  return `import createClient from 'openapi-fetch';
import type { components, paths } from './schema.ts';

type Generation = components['schemas']['Generation'];
type CreateRequest = components['schemas']['CreateGenerationRequest'];

const baseUrl = process.env.EASEL_URL;
const apiKey = process.env.EASEL_API_KEY;
if (!baseUrl || !apiKey) throw new Error('set EASEL_URL and EASEL_API_KEY');
const client = createClient<paths>({ baseUrl, headers: { Authorization: \`Bearer \${apiKey}\` } });

function fail(what: string, status: number, error: unknown): never {
  throw new Error(\`\${what}: HTTP \${status} \${JSON.stringify(error)}\`);
}

function summary(g: Generation) {
  return {
    id: g.id,
    object: g.object,
    status: g.status,
    prompt: g.prompt,
    negative_prompt: g.negative_prompt,
    width: g.width,
    height: g.height,
    steps: g.steps,
    guidance_scale: g.guidance_scale,
    seed: g.seed,
    num_images: g.num_images,
    requested_scheduler: g.requested_scheduler,
    karras: g.karras,
    queue_position: g.queue_position,
    progress: g.progress,
    cancel_requested: g.cancel_requested,
    outputs: g.outputs.length,
    error: g.error,
    attempts: g.attempts,
    created_at: g.created_at,
    started_at: g.started_at,
    finished_at: g.finished_at,
  };
}

const body: CreateRequest = {
  prompt: 'a lighthouse from the generated client',
  negative_prompt: 'blurry',
  width: 64,
  height: 64,
  steps: 2,
  guidance_scale: 5,
  seed: 42,
  scheduler: 'euler',
  karras: true,
};
const idempotencyKey = \`sdk-\${process.pid}-\${Date.now()}\`;

const created = await client.POST('/v1/generations', {
  body,
  params: { header: { 'Idempotency-Key': idempotencyKey } },
});
if (!created.data) fail('create', created.response.status, created.error);

const replay = await client.POST('/v1/generations', {
  body,
  params: { header: { 'Idempotency-Key': idempotencyKey } },
});
if (!replay.data) fail('replay', replay.response.status, replay.error);

const second = await client.POST('/v1/generations', { body: { prompt: 'the second one', width: 64, height: 64 } });
if (!second.data) fail('create second', second.response.status, second.error);

const got = await client.GET('/v1/generations/{id}', { params: { path: { id: created.data.id } } });
if (!got.data) fail('get', got.response.status, got.error);

const page1 = await client.GET('/v1/generations', { params: { query: { limit: 1 } } });
if (!page1.data) fail('list', page1.response.status, page1.error);
const cursor = page1.data.next_cursor;
if (cursor === null) throw new Error('list: expected a next_cursor');
const page2 = await client.GET('/v1/generations', { params: { query: { limit: 1, cursor } } });
if (!page2.data) fail('list page 2', page2.response.status, page2.error);

const missing = await client.GET('/v1/generations/{id}', {
  params: { path: { id: '00000000-0000-4000-8000-000000000000' } },
});
if (missing.data) throw new Error('get of an unknown id answered with data');

let cancel: { http: number; generation: ReturnType<typeof summary> } | null = null;
${
  withCancel
    ? `const canceled = await client.POST('/v1/generations/{id}/cancel', { params: { path: { id: second.data.id } } });
if (!canceled.data) fail('cancel', canceled.response.status, canceled.error);
cancel = { http: canceled.response.status, generation: summary(canceled.data) };`
    : '// openapi.yaml has no cancel route yet.'
}

console.log(
  JSON.stringify({
    created: { http: created.response.status, location: created.response.headers.get('location'), generation: summary(created.data) },
    replay: {
      http: replay.response.status,
      replayed: replay.response.headers.get('idempotent-replayed'),
      id: replay.data.id,
    },
    second: summary(second.data),
    got: summary(got.data),
    page1: { object: page1.data.object, ids: page1.data.data.map((g) => g.id), has_more: page1.data.has_more },
    page2: { ids: page2.data.data.map((g) => g.id), has_more: page2.data.has_more, next_cursor: page2.data.next_cursor },
    missing: {
      http: missing.response.status,
      code: missing.error?.code ?? null,
      type: missing.error?.type ?? null,
      request_id: typeof missing.error?.request_id,
    },
    cancel,
  }),
);
`;
}

interface Summary {
  id: string;
  object: string;
  status: string;
  prompt: string;
  negative_prompt: string;
  width: number;
  height: number;
  steps: number;
  guidance_scale: number;
  seed: number;
  num_images: number;
  requested_scheduler: string | null;
  karras: boolean | null;
  queue_position: number | null;
  progress: unknown;
  cancel_requested: boolean;
  outputs: number;
  error: unknown;
  attempts: number;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

interface Output {
  created: { http: number; location: string | null; generation: Summary };
  replay: { http: number; replayed: string | null; id: string };
  second: Summary;
  got: Summary;
  page1: { object: string; ids: string[]; has_more: boolean };
  page2: { ids: string[]; has_more: boolean; next_cursor: string | null };
  missing: { http: number; code: string | null; type: string | null; request_id: string };
  cancel: { http: number; generation: Summary } | null;
}

/** Every key present and nothing undefined: a field the server left out would vanish from the JSON. */
function assertComplete(summary: Summary, what: string) {
  for (const field of [
    'id',
    'object',
    'status',
    'prompt',
    'negative_prompt',
    'width',
    'height',
    'steps',
    'guidance_scale',
    'seed',
    'num_images',
    'requested_scheduler',
    'karras',
    'queue_position',
    'progress',
    'cancel_requested',
    'outputs',
    'error',
    'attempts',
    'created_at',
    'started_at',
    'finished_at',
  ]) {
    assert.ok(field in summary, `${what}: the live API sent no '${field}', which openapi.yaml requires`);
  }
}

test('a client generated from openapi.yaml type-checks and works against the live API', async (t) => {
  const project = join(dir, 'client');
  await writeProject(project, spec);
  const checked = await typecheck(project);
  assert.equal(
    checked.code,
    0,
    `tsc found errors in the generated client:\n${checked.stdout}${checked.stderr}`,
  );

  const ran = await run(process.execPath, ['program.ts'], {
    cwd: project,
    env: { ...process.env, EASEL_URL: stack.baseUrl(), EASEL_API_KEY: stack.apiKey },
  });
  assert.equal(ran.code, 0, `the generated client failed against the live API:\n${ran.stderr}`);
  const out = JSON.parse(ran.stdout.trim()) as Output;
  t.diagnostic(
    hasCancel ? 'cancel route exercised' : 'openapi.yaml has no cancel route: cancel not exercised',
  );

  const created = out.created.generation;
  assertComplete(created, 'create');
  assert.equal(out.created.http, 202);
  assert.equal(out.created.location, `/v1/generations/${created.id}`);
  assert.match(created.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.deepEqual(
    {
      object: created.object,
      status: created.status,
      prompt: created.prompt,
      negative_prompt: created.negative_prompt,
      width: created.width,
      height: created.height,
      steps: created.steps,
      guidance_scale: created.guidance_scale,
      seed: created.seed,
      num_images: created.num_images,
      requested_scheduler: created.requested_scheduler,
      karras: created.karras,
      queue_position: created.queue_position,
      progress: created.progress,
      cancel_requested: created.cancel_requested,
      outputs: created.outputs,
      error: created.error,
      attempts: created.attempts,
      started_at: created.started_at,
      finished_at: created.finished_at,
    },
    {
      object: 'generation',
      status: 'queued',
      prompt: 'a lighthouse from the generated client',
      negative_prompt: 'blurry',
      width: 64,
      height: 64,
      steps: 2,
      guidance_scale: 5,
      seed: 42,
      num_images: 1,
      requested_scheduler: 'euler',
      karras: true,
      queue_position: 0,
      progress: null,
      cancel_requested: false,
      outputs: 0,
      error: null,
      attempts: 0,
      started_at: null,
      finished_at: null,
    },
  );
  assert.ok(!Number.isNaN(Date.parse(created.created_at)));

  assert.equal(out.replay.id, created.id, 'same Idempotency-Key and body: same generation');
  assert.equal(out.replay.replayed, 'true');

  const second = out.second;
  assertComplete(second, 'create second');
  assert.equal(second.queue_position, 1, 'one generation ahead of it');
  assert.equal(second.width, 64);
  // Absent fields take the model's defaults, as GET /v1/models/{id} shows them.
  const model = (await (await stack.request(`/v1/models/${DEMO_MODEL_ID}`)).json()) as {
    defaults: { steps: number; guidance_scale: number };
  };
  assert.equal(second.steps, model.defaults.steps, "the model's default steps");
  assert.equal(second.guidance_scale, model.defaults.guidance_scale);
  assert.equal(second.num_images, 1);
  assert.equal(typeof second.seed, 'number', 'the server chose a seed');
  assert.equal(second.requested_scheduler, null);

  assertComplete(out.got, 'get');
  assert.deepEqual(out.got, created, 'GET reads back what POST answered');

  assert.deepEqual(out.page1, { object: 'list', ids: [second.id], has_more: true });
  assert.deepEqual(out.page2, { ids: [created.id], has_more: false, next_cursor: null });

  assert.deepEqual(out.missing, {
    http: 404,
    code: 'not_found',
    type: 'urn:easel:problem:not_found',
    request_id: 'string',
  });

  if (hasCancel) {
    assert.ok(out.cancel, 'the cancel route was called');
    assert.equal(out.cancel.http, 200, 'a queued generation is canceled at once');
    assertComplete(out.cancel.generation, 'cancel');
    assert.equal(out.cancel.generation.id, second.id);
    assert.equal(out.cancel.generation.status, 'canceled');
    assert.equal(out.cancel.generation.queue_position, null);
    assert.ok(out.cancel.generation.finished_at);
  } else {
    assert.equal(out.cancel, null);
  }
});

test('the type-check is what ties the program to the document: a renamed field fails it', async () => {
  // The program reads queue_position; a document that calls it something else must not compile.
  const tampered = structuredClone(spec) as {
    components: { schemas: { Generation: { properties: Record<string, unknown>; required: string[] } } };
  };
  const generation = tampered.components.schemas.Generation;
  generation.properties.position = generation.properties.queue_position;
  delete generation.properties.queue_position;
  generation.required = generation.required.map((f) => (f === 'queue_position' ? 'position' : f));

  const project = join(dir, 'tampered');
  await writeProject(project, tampered as unknown as Record<string, unknown>);
  const checked = await typecheck(project);
  assert.notEqual(checked.code, 0, 'tsc accepted a program reading a field the document does not have');
  assert.match(
    checked.stdout,
    /program\.ts\(\d+,\d+\): error TS2339: Property 'queue_position' does not exist/,
  );
});
