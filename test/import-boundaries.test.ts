// The layers import downward only, so each folder keeps one role and each process loads only what
// it runs (an API that imported gpu-worker/ once could not boot in its image):
//   db/         Postgres (types, migrations, repositories, queue contracts): imports only itself
//   shared/     what every process shares (the generation contract and resource, config
//               parsing, object store, health listener): db/ and itself
//   webhooks/   delivery (the sender process): db/, shared/
//   api/        HTTP: db/, shared/, and the webhook target policy (the create-time URL check)
//   gpu-worker/ the worker process: db/, shared/
//   bin/        the CLI: anything, but gpu-worker/ only through import() of a command that runs a
//               model locally, so `easel submit` and friends never load ONNX Runtime
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { type ImportEdge, importsOf, REPO_ROOT } from './harness/imports.ts';

const LAYERS = ['db', 'shared', 'webhooks', 'api', 'gpu-worker', 'bin'] as const;
type Layer = (typeof LAYERS)[number];

/** What each layer's non-test code may import from the other layers. */
const ALLOWED: Record<Layer, (edge: ImportEdge, to: Layer) => boolean> = {
  db: (_, to) => to === 'db',
  shared: (_, to) => to === 'shared' || to === 'db',
  webhooks: (_, to) => ['webhooks', 'db', 'shared'].includes(to),
  api: (edge, to) =>
    ['api', 'db', 'shared'].includes(to) || ['webhooks/policy.ts', 'webhooks/ssrf.ts'].includes(edge.to),
  'gpu-worker': (_, to) => ['gpu-worker', 'db', 'shared'].includes(to),
  bin: (edge, to) => to !== 'gpu-worker' || edge.dynamic,
};

const layerOf = (path: string): Layer | undefined => LAYERS.find((layer) => path.startsWith(`${layer}/`));

const sources = execFileSync('git', ['ls-files', '-co', '--exclude-standard', ...LAYERS], {
  cwd: REPO_ROOT,
  encoding: 'utf8',
})
  .split('\n')
  .filter((file) => /\.ts$/.test(file) && !file.endsWith('.test.ts') && !file.includes('/assets/'))
  // Tracked files deleted in the working tree (a move not yet committed) are not sources any more.
  .filter((file) => existsSync(join(REPO_ROOT, file)));

test('every layer imports only the layers below it', () => {
  assert.ok(sources.length > 50, `found ${sources.length} source files`);
  const violations: string[] = [];
  for (const file of sources) {
    const from = layerOf(file);
    if (!from) continue;
    for (const edge of importsOf(file)) {
      if (edge.kind !== 'file') continue;
      const to = layerOf(edge.to);
      if (to && !ALLOWED[from](edge, to)) {
        violations.push(`${edge.from} → ${edge.to}${edge.dynamic ? ' (dynamic)' : ''}`);
      }
    }
  }
  assert.deepEqual(violations, []);
});

test('the rules bite: a static import of the worker from the CLI is refused, a dynamic one allowed', () => {
  const edge = (dynamic: boolean): ImportEdge => ({
    from: 'bin/commands/submit.ts',
    to: 'gpu-worker/models/text-to-image.ts',
    kind: 'file',
    dynamic,
  });
  assert.equal(ALLOWED.bin(edge(false), 'gpu-worker'), false);
  assert.equal(ALLOWED.bin(edge(true), 'gpu-worker'), true);
  assert.equal(ALLOWED.db({ ...edge(false), from: 'db/queue.ts' }, 'gpu-worker'), false);
  // The dynamic flag comes from the source text: bin/easel.ts loads its commands with import().
  assert.ok(importsOf('bin/easel.ts').some((e) => e.dynamic && e.to.startsWith('bin/commands/')));
});
