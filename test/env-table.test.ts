// The README's environment table (test/env-table.ts) covers the schemas by construction; the
// variables read from process.env outside them are a hand-kept list. This keeps that list whole.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { collectRows, renderTable } from './env-table.ts';
import { REPO_ROOT } from './harness/imports.ts';

/** Read only by bin/local/s3-server.ts run as a process by the test harness, never by users. */
const TEST_ONLY = new Set(['S3_PORT', 'S3_STORAGE_DIR']);

test('every variable the code reads from process.env is in the table', () => {
  const sources = execFileSync(
    'git',
    ['ls-files', '-co', '--exclude-standard', 'api', 'db', 'gpu-worker', 'webhooks', 'shared', 'bin'],
    { cwd: REPO_ROOT, encoding: 'utf8' },
  )
    .split('\n')
    .filter((file) => /\.(ts|js)$/.test(file) && !file.endsWith('.test.ts') && file !== 'bin/testing.ts')
    .filter((file) => existsSync(join(REPO_ROOT, file)));
  const read = new Map<string, string>();
  for (const file of sources) {
    const text = readFileSync(join(REPO_ROOT, file), 'utf8');
    for (const match of text.matchAll(/process\.env(?:\.([A-Z][A-Z0-9_]*)|\[\s*'([A-Z][A-Z0-9_]*)'\s*\])/g)) {
      const name = match[1] ?? match[2];
      if (name && !TEST_ONLY.has(name) && !read.has(name)) read.set(name, file);
    }
  }
  assert.ok(read.has('EASEL_API_KEY'), 'the scan finds the launcher reading EASEL_API_KEY');
  const listed = new Set(collectRows().map((row) => row.name));
  const missing = [...read].filter(([name]) => !listed.has(name)).map(([name, file]) => `${name} (${file})`);
  assert.deepEqual(missing, [], 'read from process.env but not in test/env-table.ts DIRECT_READS');
});

test('every variable in the table has exactly one description', () => {
  assert.doesNotThrow(renderTable);
  const table = renderTable();
  for (const name of ['MAX_IN_FLIGHT_PER_KEY', 'MAX_QUEUED', 'TRANSLATION_MODE', 'EASEL_API_KEY']) {
    assert.match(table, new RegExp(`^\\| \`${name}\` \\|`, 'm'));
  }
});
