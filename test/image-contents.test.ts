// No Docker engine runs here, so the images are checked by reading them: every file an image's
// entry points import (statically or with a literal dynamic import(), followed transitively) must
// be inside what its Dockerfile COPYs, and every package they import must be a production
// dependency (the images run `npm ci --omit=dev`). An API image that imported gpu-worker/ once
// failed at boot with ERR_MODULE_NOT_FOUND; this is the test that would have caught it.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { importClosure, REPO_ROOT as ROOT } from './harness/imports.ts';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
};

interface Image {
  dockerfile: string;
  /** Repository-relative paths the Dockerfile copies (files or folders). */
  copied: string[];
  /** Scripts the image runs: its CMD, plus every compose `command` run on it. */
  entryPoints: string[];
}

function readImage(dockerfile: string): Image {
  const text = readFileSync(join(ROOT, dockerfile), 'utf8');
  const copied: string[] = [];
  let cmd: string[] = [];
  for (const line of text.split('\n')) {
    const copy = /^COPY\s+(?!--from)(.+)$/.exec(line.trim());
    if (copy?.[1]) {
      const parts = copy[1].split(/\s+/).filter((p) => !p.startsWith('--'));
      copied.push(...parts.slice(0, -1).map((p) => p.replace(/^\.\//, '').replace(/\/$/, '')));
    }
    const exec = /^CMD\s+(\[.*\])\s*$/.exec(line.trim());
    if (exec?.[1]) cmd = JSON.parse(exec[1]) as string[];
  }
  const entryPoints = cmd.filter((arg) => /\.(ts|js|mjs)$/.test(arg));
  const compose = parse(readFileSync(join(ROOT, 'infra/docker-compose.yml'), 'utf8')) as {
    services: Record<string, { build?: { dockerfile?: string }; command?: string[] | string }>;
  };
  for (const service of Object.values(compose.services)) {
    if (service.build?.dockerfile !== dockerfile || !service.command) continue;
    const args = Array.isArray(service.command) ? service.command : service.command.split(/\s+/);
    entryPoints.push(...args.filter((arg) => /\.(ts|js|mjs)$/.test(arg)));
  }
  return { dockerfile, copied, entryPoints };
}

const isCopied = (image: Image, file: string) =>
  image.copied.some((path) => file === path || file.startsWith(`${path}/`));

for (const dockerfile of ['infra/Dockerfile.api', 'infra/Dockerfile.gpu-worker']) {
  test(`${dockerfile}: its entry points import only files it copies and production packages`, () => {
    const image = readImage(dockerfile);
    assert.ok(image.entryPoints.length > 0, 'the image names an entry point');
    for (const path of image.copied) assert.ok(existsSync(join(ROOT, path)), `COPY ${path}: no such path`);
    const { files, packages } = importClosure(image.entryPoints);
    const missing = files.filter((file) => !isCopied(image, file));
    assert.deepEqual(missing, [], `imported but not copied into ${dockerfile}`);
    const notProduction = [...packages].filter(([name]) => !(name in pkg.dependencies));
    assert.deepEqual(notProduction, [], 'imported packages that npm ci --omit=dev does not install');
  });
}

test('the check itself sees a file an entry point imports dynamically', () => {
  // bin/easel.ts loads its commands with import(): they must be part of the closure.
  const { files } = importClosure(['bin/easel.ts']);
  assert.ok(
    files.some((f) => f.startsWith('bin/commands/')),
    files.join(', '),
  );
});
