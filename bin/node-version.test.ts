// bin/easel.js (what `npm start` and `npx easel` run) says in one line which Node it needs when the
// Node is too old to run the TypeScript CLI, instead of a stack trace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../', import.meta.url));

/** Runs bin/easel.js under this Node, made to report another version. */
function runAs(version: string, args: string[]) {
  const pretend = `data:text/javascript,Object.defineProperty(process,"versions",{value:{...process.versions,node:"${version}"}})`;
  return spawnSync(process.execPath, ['--import', pretend, 'bin/easel.js', ...args], {
    cwd: root,
    encoding: 'utf8',
  });
}

const tooOld =
  /^easel needs Node\.js 22\.18 or newer \(24 LTS recommended\), this is Node [\d.]+: install it from https:\/\/nodejs\.org\/en\/download \(or `nvm install 24`\) and run the command again\.\n$/;

test('a Node older than 22.18 gets one line saying which Node is needed and how to get it', () => {
  for (const version of ['20.20.0', '22.17.1', '23.5.0', '18.0.0']) {
    const result = runAs(version, ['start']);
    assert.equal(result.status, 1, version);
    assert.equal(result.stdout, '', version);
    assert.match(result.stderr, tooOld, version);
    assert.ok(result.stderr.includes(`this is Node ${version}:`), version);
  }
});

test('Node 22.18+, 23.6+ and 24 run the CLI', () => {
  for (const version of ['22.18.0', '23.6.0', '24.0.0', '26.1.0']) {
    const result = runAs(version, ['--help']);
    assert.equal(result.status, 0, `${version}: ${result.stderr}`);
    assert.match(result.stdout, /^usage: easel <command>/, version);
  }
});

test("the machine's own Node 20, if it has one, can read bin/easel.js and says the same", (t) => {
  const system = '/usr/bin/node';
  const version = existsSync(system)
    ? spawnSync(system, ['--version'], { encoding: 'utf8' }).stdout.trim()
    : '';
  const major = Number(/^v(\d+)/.exec(version)?.[1] ?? 0);
  if (!major || major >= 22) {
    t.skip(`no Node older than 22 at ${system} (${version || 'none'})`);
    return;
  }
  const result = spawnSync(system, ['bin/easel.js', 'start'], { cwd: root, encoding: 'utf8' });
  assert.equal(result.status, 1);
  assert.match(result.stderr, tooOld);
  assert.doesNotMatch(result.stderr, /ERR_UNKNOWN_FILE_EXTENSION|\n\s+at /);
});
