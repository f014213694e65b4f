// The embedded PostgreSQL of `easel start`: in a process group of its own when asked (so a terminal's
// Ctrl-C does not reach it), and, as root, somewhere the 'postgres' user can reach when the data
// folder is in a place it cannot enter.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
import { processAlive } from '../testing.ts';
import { type LocalPostgres, startLocalPostgres } from './embedded-postgres.ts';

const cleanups: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
});

async function query(url: string, sql: string) {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

function processGroup(pid: number): number {
  return Number(execFileSync('ps', ['-o', 'pgid=', '-p', String(pid)], { encoding: 'utf8' }).trim());
}

test('with ownProcessGroup the server leads a process group of its own, and stop() ends it', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'easel-pg-group-'));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  const server: LocalPostgres = await startLocalPostgres(dataDir, () => {}, { ownProcessGroup: true });
  cleanups.push(() => server.stop());
  const pid = server.pid ?? 0;
  assert.ok(pid > 0);
  assert.equal(processGroup(pid), pid, 'the postmaster leads its own group');
  assert.notEqual(processGroup(pid), processGroup(process.pid));
  assert.equal(server.databaseDir, join(dataDir, 'postgres'));
  assert.equal(server.relocated, undefined);
  assert.deepEqual(await query(server.url, 'select 1 as one'), [{ one: 1 }]);
  await server.stop();
  assert.equal(processAlive(pid), false);
  assert.equal(existsSync(join(server.databaseDir, 'postmaster.pid')), false, 'a clean shutdown');
});

test("as root, a data folder the 'postgres' user cannot enter moves the data to a folder it can use", async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('only as root does Postgres run as another user');
    return;
  }
  const parent = await mkdtemp(join(tmpdir(), 'easel-pg-closed-'));
  cleanups.push(() => rm(parent, { recursive: true, force: true }));
  await chmod(parent, 0o755); // mkdtemp makes it 0700: only `closed` below is to be closed
  const closed = join(parent, 'closed');
  await mkdir(closed, { mode: 0o700 });
  const dataDir = join(closed, '.easel');
  await mkdir(dataDir);

  const server = await startLocalPostgres(dataDir, () => {});
  cleanups.push(async () => {
    await server.stop();
    await rm(dirname(server.databaseDir), { recursive: true, force: true });
  });
  assert.ok(!server.databaseDir.startsWith(closed), server.databaseDir);
  assert.match(
    server.relocated ?? '',
    new RegExp(`cannot enter ${closed}: its data is in ${server.databaseDir}\\.$`),
  );
  assert.deepEqual(await query(server.url, 'select 1 as one'), [{ one: 1 }]);
  await query(server.url, 'create table kept (n int); insert into kept values (42)');
  await server.stop();

  // The next start from the same folder finds the same data.
  const again = await startLocalPostgres(dataDir, () => {});
  cleanups.push(() => again.stop());
  assert.equal(again.databaseDir, server.databaseDir);
  assert.deepEqual(await query(again.url, 'select n from kept'), [{ n: 42 }]);
  await again.stop();
});
