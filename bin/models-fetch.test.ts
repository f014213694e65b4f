// `easel models fetch` against a local server with the hub's URL layout: listing, resolve with
// Range support, a redirect to a "CDN" path, a required token, and faults injected on demand.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { type FetchModelError, fetchModel, globToRegExp, selectFiles } from './models-fetch.ts';
import { cleanEnv, runEasel } from './testing.ts';

const REPO = 'easel-test/tiny-sd-onnx';
const TOKEN = 'hf_test_token';

const FILES: Record<string, Buffer> = {
  'model_index.json': Buffer.from('{"_class_name":"OnnxStableDiffusionPipeline"}\n'),
  'scheduler/scheduler_config.json': Buffer.from('{"_class_name":"EulerDiscreteScheduler"}\n'),
  'tokenizer/vocab.json': randomBytes(20_000),
  'text_encoder/model.onnx': randomBytes(150_000),
  'unet/model.onnx': randomBytes(3_000_000),
  'unet/weights.pb': randomBytes(400_000),
  'vae_decoder/config.json': Buffer.from('{"scaling_factor":0.18215}\n'),
  'vae_decoder/model.onnx': randomBytes(90_000),
  // Not in the default include set:
  'README.md': Buffer.from('# tiny\n'),
  'safety_checker/model.onnx': randomBytes(50_000),
  'vae_encoder/model.onnx': randomBytes(60_000),
};
const DEFAULT_SET = Object.keys(FILES).filter(
  (f) => !['README.md'].includes(f) && !/^(safety|vae_enc)/.test(f),
);
// The real hub redirects large (LFS) files to a CDN; this one does it for the UNet.
const REDIRECTED = 'unet/model.onnx';

interface Seen {
  method: string;
  path: string;
  range: string | undefined;
}

interface Faults {
  /** Paths whose first GET sends half the bytes, then (once `cut` is called) drops the connection. */
  interruptOnce: Set<string>;
  /** Sizes the listing reports instead of the real ones. */
  listedSize: Map<string, number>;
  /** Paths served without Content-Length (chunked), so a wrong size shows only at the end. */
  chunked: Set<string>;
  /** Listed, but resolve answers 404. */
  missing: Set<string>;
  /** Served and listed in place of the real model_index.json; null: the repository has none. */
  modelIndex: Buffer | null | undefined;
}

const faults: Faults = {
  interruptOnce: new Set(),
  listedSize: new Map(),
  chunked: new Set(),
  missing: new Set(),
  modelIndex: undefined,
};
const seen: Seen[] = [];
const bodyBytes = new Map<string, number>();
let cut: (() => void) | undefined;
let endpoint = '';
const cleanup: string[] = [];

function sha(buffer: Buffer): string {
  return createHash('sha256').update(buffer).digest('hex');
}

/** The repository as served right now (FILES with the model_index.json fault applied). */
function served(): Record<string, Buffer> {
  const { 'model_index.json': index, ...rest } = FILES;
  if (faults.modelIndex === null) return rest;
  return { 'model_index.json': faults.modelIndex ?? (index as Buffer), ...rest };
}

function serveFile(req: IncomingMessage, res: ServerResponse, path: string): void {
  const data = served()[path] as Buffer;
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const start = range ? Number(range[1]) : 0;
  if (start > data.length || (range && start === data.length)) {
    res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
    return;
  }
  const body = data.subarray(start);
  const headers: Record<string, string> = {
    'content-type': 'application/octet-stream',
    'accept-ranges': 'bytes',
    etag: `"${sha(data)}"`,
  };
  if (!faults.chunked.has(path)) headers['content-length'] = String(body.length);
  if (range) headers['content-range'] = `bytes ${start}-${data.length - 1}/${data.length}`;
  res.writeHead(range ? 206 : 200, headers);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const count = (n: number) => bodyBytes.set(path, (bodyBytes.get(path) ?? 0) + n);
  if (faults.interruptOnce.has(path)) {
    faults.interruptOnce.delete(path);
    const half = body.subarray(0, Math.floor(body.length / 2));
    count(half.length);
    // Dropped only once the client has the half on disk, so the resume point is deterministic.
    cut = () => res.destroy();
    res.write(half);
    return;
  }
  count(body.length);
  res.end(body);
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const path = decodeURIComponent(url.pathname);
  seen.push({ method: req.method ?? '', path, range: req.headers.range });

  // The CDN: signed URLs, no token needed.
  const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(path);
  if (cdn) {
    const file = Object.entries(served()).find(([, data]) => sha(data) === cdn[1])?.[0];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    serveFile(req, res, file);
    return;
  }
  if (req.headers.authorization !== `Bearer ${TOKEN}`) {
    res.writeHead(401, { 'content-type': 'application/json', 'x-error-code': 'RepoNotFound' });
    res.end('{"error":"Invalid credentials in Authorization header"}');
    return;
  }
  const listing = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(path);
  if (listing) {
    if (listing[1] !== REPO) {
      res.writeHead(404, { 'x-error-code': 'RepoNotFound' });
      res.end('{"error":"Repository not found"}');
      return;
    }
    if (listing[2] !== 'main') {
      res.writeHead(404, { 'x-error-code': 'RevisionNotFound' });
      res.end('{"error":"Invalid rev id"}');
      return;
    }
    const blobs = url.searchParams.get('blobs') === 'true';
    const siblings = Object.entries(served()).map(([rfilename, data]) => {
      const size = faults.listedSize.get(rfilename) ?? data.length;
      // Some sizes are missing: one only comes with ?blobs=true, the redirected one only from a HEAD.
      if (rfilename === 'text_encoder/model.onnx' && !blobs) return { rfilename };
      if (rfilename === REDIRECTED) return { rfilename };
      return { rfilename, size };
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: REPO, sha: 'abc123', siblings }));
    return;
  }
  const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
  if (resolve && resolve[1] === REPO && resolve[2] === 'main') {
    const file = resolve[3] as string;
    const data = served()[file];
    if (!data || faults.missing.has(file)) {
      res.writeHead(404, { 'x-error-code': 'EntryNotFound' });
      res.end();
      return;
    }
    if (file === REDIRECTED) {
      const size = faults.listedSize.get(file) ?? data.length;
      res.writeHead(302, { location: `/cdn/${sha(data)}`, 'x-linked-size': String(size) });
      res.end();
      return;
    }
    serveFile(req, res, file);
    return;
  }
  res.writeHead(404).end();
}

const server = createServer(handle);

before(async () => {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  server.close();
  await Promise.all(cleanup.map((dir) => rm(dir, { recursive: true, force: true })));
});

beforeEach(() => {
  faults.interruptOnce.clear();
  faults.listedSize.clear();
  faults.chunked.clear();
  faults.missing.clear();
  faults.modelIndex = undefined;
  seen.length = 0;
  bodyBytes.clear();
  cut = undefined;
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'easel-fetch-'));
  cleanup.push(dir);
  return dir;
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

async function assertDownloaded(dir: string, files: string[]): Promise<void> {
  assert.deepEqual(await listFiles(dir), [...files].sort());
  for (const file of files) {
    assert.ok(
      (await readFile(join(dir, file))).equals(FILES[file] as Buffer),
      `${file} has the served bytes`,
    );
  }
}

/** The CLI with this test's hub settings only (no HF_TOKEN from the developer's environment). */
function run(args: string[], env: NodeJS.ProcessEnv) {
  return runEasel(args, cleanEnv({ HF_TOKEN: '', ...env }));
}

describe('include globs', () => {
  test('match like huggingface-cli --include (fnmatch: * also crosses /)', () => {
    assert.ok(globToRegExp('unet/*').test('unet/model.onnx'));
    assert.ok(globToRegExp('*/config.json').test('vae_decoder/config.json'));
    assert.ok(globToRegExp('*.onnx').test('unet/model.onnx'));
    assert.ok(!globToRegExp('unet/*').test('vae_decoder/model.onnx'));
    assert.ok(!globToRegExp('model_index.json').test('model_indexXjson'));
    assert.ok(globToRegExp('vae_[de]*/model.onnx').test('vae_decoder/model.onnx'));
    assert.deepEqual(selectFiles(Object.keys(FILES), ['*.json']), [
      'model_index.json',
      'scheduler/scheduler_config.json',
      'tokenizer/vocab.json',
      'vae_decoder/config.json',
    ]);
  });
});

describe('easel models fetch (CLI)', () => {
  test('downloads the default ONNX set with the token, through the redirect, then skips it all', async () => {
    const dir = await tempDir();
    const env = { HF_ENDPOINT: endpoint, HF_TOKEN: TOKEN };
    const first = await run(['models', 'fetch', REPO, '--to', dir], env);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /fetched easel-test\/tiny-sd-onnx into .*: 8 files/);
    await assertDownloaded(dir, DEFAULT_SET);
    // The redirected file was fetched from the CDN path; sizes came from ?blobs=true and a HEAD.
    assert.ok(seen.some((s) => s.method === 'GET' && s.path.startsWith('/cdn/')));
    assert.ok(seen.some((s) => s.path.endsWith('/revision/main') && s.method === 'GET'));
    assert.ok(seen.some((s) => s.method === 'HEAD' && s.path.endsWith(REDIRECTED)));

    seen.length = 0;
    const again = await run(['models', 'fetch', REPO, '--to', dir], env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /8 already complete/);
    assert.ok(
      !seen.some((s) => s.path.includes('/resolve/') && s.method === 'GET'),
      'no file is downloaded twice',
    );
  });

  test('--include overrides the default set', async () => {
    const dir = await tempDir();
    const result = await run(
      ['models', 'fetch', REPO, '--to', dir, '--include', '*.md', '--include', 'vae_encoder/*'],
      { HF_ENDPOINT: endpoint, HF_TOKEN: TOKEN },
    );
    assert.equal(result.code, 0, result.stderr);
    await assertDownloaded(dir, ['README.md', 'vae_encoder/model.onnx']);
  });

  test('401 without a token: exit 1, one line that says to set HF_TOKEN', async () => {
    const dir = await tempDir();
    const result = await run(['models', 'fetch', REPO, '--to', dir], { HF_ENDPOINT: endpoint });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^easel models: .*HTTP 401.*set HF_TOKEN/);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.deepEqual(await listFiles(dir), []);
  });

  test('404: unknown repository or revision, said so', async () => {
    const dir = await tempDir();
    const env = { HF_ENDPOINT: endpoint, HF_TOKEN: TOKEN };
    const repo = await run(['models', 'fetch', 'easel-test/no-such-model', '--to', dir], env);
    assert.equal(repo.code, 1);
    assert.match(repo.stderr, /repository easel-test\/no-such-model was not found.*404/);
    const revision = await run(['models', 'fetch', REPO, '--to', dir, '--revision', 'v9'], env);
    assert.equal(revision.code, 1);
    assert.match(revision.stderr, /revision 'v9' of easel-test\/tiny-sd-onnx was not found.*404/);
  });

  test('a missing --to or REPO_ID is a usage error (exit 2)', async () => {
    const noTo = await run(['models', 'fetch', REPO], { HF_ENDPOINT: endpoint });
    assert.equal(noTo.code, 2);
    assert.match(noTo.stderr, /--to is required/);
    const noRepo = await run(['models', 'fetch', '--to', '/tmp/x'], { HF_ENDPOINT: endpoint });
    assert.equal(noRepo.code, 2);
  });
});

describe('fetchModel', () => {
  const options = (to: string) => ({ repo: REPO, to, endpoint, token: TOKEN, retryDelayMs: 0 });

  test('an interrupted file resumes with a Range request within the same run', async () => {
    const dir = await tempDir();
    const size = (FILES[REDIRECTED] as Buffer).length;
    faults.interruptOnce.add(REDIRECTED);
    const result = await fetchModel(options(dir), (p) => {
      if (p.event === 'data' && p.file === REDIRECTED && p.fileBytes === Math.floor(size / 2)) cut?.();
    });
    await assertDownloaded(dir, DEFAULT_SET);
    // The Range header survives the redirect to the CDN.
    const ranges = seen.filter((s) => s.method === 'GET' && s.range).map((s) => `${s.path} ${s.range}`);
    assert.deepEqual(ranges, [
      `/${REPO}/resolve/main/${REDIRECTED} bytes=${Math.floor(size / 2)}-`,
      `/cdn/${sha(FILES[REDIRECTED] as Buffer)} bytes=${Math.floor(size / 2)}-`,
    ]);
    assert.ok((bodyBytes.get(REDIRECTED) ?? 0) < 2 * size);
    assert.equal(bodyBytes.get(REDIRECTED), size, 'each byte is sent once');
    assert.equal(result.files.find((f) => f.path === REDIRECTED)?.status, 'resumed');
  });

  test('with no retries the run fails naming the file, keeps the partial, and the next run resumes it', async () => {
    const dir = await tempDir();
    const size = (FILES[REDIRECTED] as Buffer).length;
    faults.interruptOnce.add(REDIRECTED);
    await assert.rejects(
      fetchModel({ ...options(dir), retries: 0 }, (p) => {
        if (p.event === 'data' && p.file === REDIRECTED && p.fileBytes === Math.floor(size / 2)) cut?.();
      }),
      (error: FetchModelError) => {
        assert.equal(error.code, 'network');
        assert.equal(error.file, REDIRECTED);
        assert.match(
          error.message,
          /^unet\/model\.onnx: the download was interrupted.*run the same command again/,
        );
        return true;
      },
    );
    assert.equal((await stat(join(dir, `${REDIRECTED}.incomplete`))).size, Math.floor(size / 2));

    seen.length = 0;
    const result = await fetchModel(options(dir));
    await assertDownloaded(dir, DEFAULT_SET);
    assert.ok(seen.some((s) => s.path.startsWith('/cdn/') && s.range === `bytes=${Math.floor(size / 2)}-`));
    assert.ok((bodyBytes.get(REDIRECTED) ?? 0) < 2 * size);
    assert.equal(result.files.find((f) => f.path === REDIRECTED)?.status, 'resumed');
    // Files completed by the first run are not fetched again.
    assert.equal(result.files.find((f) => f.path === 'text_encoder/model.onnx')?.status, 'skipped');
  });

  test('a size that differs from the listing is an error naming the file', async () => {
    const dir = await tempDir();
    const file = 'vae_decoder/model.onnx';
    const real = (FILES[file] as Buffer).length;
    faults.listedSize.set(file, real + 100);
    await assert.rejects(fetchModel(options(dir)), (error: FetchModelError) => {
      assert.equal(error.code, 'size_mismatch');
      assert.equal(error.file, file);
      assert.match(error.message, new RegExp(`^${file}: size mismatch.*${real}.*${real + 100}`));
      return true;
    });
    await assert.rejects(stat(join(dir, file)), { code: 'ENOENT' });
  });

  test('a short chunked body keeps the partial for resume; a long one is discarded', async () => {
    const dir = await tempDir();
    const file = 'text_encoder/model.onnx';
    const real = (FILES[file] as Buffer).length;
    faults.chunked.add(file);
    faults.listedSize.set(file, real + 10);
    await assert.rejects(
      fetchModel({ ...options(dir), include: [file] }),
      /text_encoder\/model\.onnx: size mismatch/,
    );
    assert.equal((await stat(join(dir, `${file}.incomplete`))).size, real);

    faults.listedSize.set(file, real - 10);
    await rm(join(dir, `${file}.incomplete`));
    await assert.rejects(
      fetchModel({ ...options(dir), include: [file] }),
      /text_encoder\/model\.onnx: size mismatch/,
    );
    assert.deepEqual(await listFiles(dir), []);
  });

  test('without --include the pipeline model_index.json names picks the family and its files; an unknown pipeline or no model_index.json is refused', async () => {
    const dir = await tempDir();
    faults.modelIndex = Buffer.from('{"_class_name":"FluxPipeline"}\n');
    await assert.rejects(fetchModel(options(dir)), (error: FetchModelError) => {
      assert.equal(error.code, 'invalid');
      assert.equal(error.file, 'model_index.json');
      assert.match(
        error.message,
        /^model_index\.json: names the pipeline "FluxPipeline", which Easel does not load \(supported: OnnxStableDiffusionPipeline, StableDiffusionPipeline, KandinskyCombinedPipeline, KandinskyV22CombinedPipeline\); name the files with --include/,
      );
      return true;
    });
    faults.modelIndex = null;
    await assert.rejects(fetchModel(options(dir)), (error: FetchModelError) => {
      assert.equal(error.code, 'no_files');
      assert.match(error.message, /has no model_index\.json.*name the files with --include/);
      return true;
    });
    assert.deepEqual(await listFiles(dir), [], 'nothing is written before the files are known');
    const result = await fetchModel({ ...options(dir), include: ['vae_encoder/*'] });
    assert.deepEqual(
      result.files.map((f) => f.path),
      ['vae_encoder/model.onnx'],
    );
  });

  test('a wrong token is refused with a hint about HF_TOKEN; a missing file is a clear 404', async () => {
    const dir = await tempDir();
    await assert.rejects(fetchModel({ ...options(dir), token: 'wrong' }), (error: FetchModelError) => {
      assert.equal(error.code, 'unauthorized');
      assert.match(error.message, /HF_TOKEN was sent but does not grant access/);
      return true;
    });
    faults.missing.add('tokenizer/vocab.json');
    await assert.rejects(fetchModel(options(dir)), (error: FetchModelError) => {
      assert.equal(error.code, 'not_found');
      assert.match(
        error.message,
        /^tokenizer\/vocab\.json: not found in easel-test\/tiny-sd-onnx at revision 'main'.*404/,
      );
      return true;
    });
    await assert.rejects(fetchModel({ ...options(dir), include: ['nothing/*'] }), { code: 'no_files' });
  });
});
