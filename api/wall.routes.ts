// The web page at `/` (the wall): a form to create generations and the calling key's generations,
// live. Plain files in api/wall/ served as they are (no build step, nothing from a CDN, so it works
// offline); like /docs it is a page for people, registered with plain app.get() and so outside the
// OpenAPI document. The page calls the public API with the key the user typed; the server gives it
// no privileges of its own.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Context, Env, Hono } from 'hono';

/** The folder the page's files are read from (the API image must copy it: it is under api/). */
export const WALL_DIR = fileURLToPath(new URL('./wall/', import.meta.url));

/** The only files served from WALL_DIR, at /wall/<name>; nothing else in the folder is. */
const ASSETS: Record<string, string> = {
  'wall.js': 'text/javascript; charset=utf-8',
  'wall.css': 'text/css; charset=utf-8',
};

// Scripts, styles and API calls only from this origin; images also from the object store, whose
// presigned URLs are on another origin that differs per deployment (hence any http(s) origin).
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data: blob: http: https:",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const COMMON_HEADERS = {
  'x-content-type-options': 'nosniff',
  // Presigned image URLs are fetched from the page: they need not learn where it is.
  'referrer-policy': 'no-referrer',
};

interface File {
  body: Uint8Array<ArrayBuffer>;
  type: string;
  /** Content hash: the ETag, and the `?v=` that makes an asset URL cacheable for good. */
  version: string;
}

function fingerprint(body: Uint8Array): string {
  return createHash('sha256').update(body).digest('base64url').slice(0, 16);
}

function readAsset(name: string, type: string): File {
  const body = new Uint8Array(readFileSync(join(WALL_DIR, name)));
  return { body, type, version: fingerprint(body) };
}

/** index.html with each asset reference pinned to its content (`/wall/wall.js?v=<hash>`). */
function readPage(assets: Map<string, File>): File {
  let html = readFileSync(join(WALL_DIR, 'index.html'), 'utf8');
  for (const [name, asset] of assets) {
    html = html.replaceAll(`"/wall/${name}"`, `"/wall/${name}?v=${asset.version}"`);
  }
  const body = new TextEncoder().encode(html);
  return { body, type: 'text/html; charset=utf-8', version: fingerprint(body) };
}

function send(c: Context, file: File, cacheControl: string, extra: Record<string, string> = {}): Response {
  const etag = `"${file.version}"`;
  const headers = { ...COMMON_HEADERS, ...extra, etag, 'cache-control': cacheControl };
  const match = c.req.header('if-none-match');
  if (match?.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag)) {
    return c.body(null, 304, headers);
  }
  return c.body(file.body, 200, { ...headers, 'content-type': file.type });
}

/**
 * `/`: the page, revalidated on every load (`no-cache` + ETag), so a new release shows at once.
 * `/wall/<asset>`: with the `?v=` the page links it with, immutable for a year (a new release
 * changes the hash, hence the URL); without it or with a stale one, revalidated like the page.
 * The files are read once here, so a missing file stops the API at boot, not at the first visit.
 */
export function registerWallRoutes<E extends Env>(app: Hono<E>): void {
  const assets = new Map(Object.entries(ASSETS).map(([name, type]) => [name, readAsset(name, type)]));
  const page = readPage(assets);
  app.get('/', (c) =>
    send(c, page, 'no-cache', {
      'content-security-policy': CONTENT_SECURITY_POLICY,
      'x-frame-options': 'DENY',
    }),
  );
  app.get('/wall/:file', (c) => {
    const asset = assets.get(c.req.param('file'));
    if (!asset) return c.notFound();
    const pinned = c.req.query('v') === asset.version;
    return send(c, asset, pinned ? 'public, max-age=31536000, immutable' : 'no-cache');
  });
}
