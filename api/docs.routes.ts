// The API docs page at /docs: Swagger UI over the OpenAPI document, with its script and stylesheet
// served from the installed swagger-ui-dist package (no CDN), so the page works without internet.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Env, Hono } from 'hono';

const distDir = dirname(fileURLToPath(import.meta.resolve('swagger-ui-dist/package.json')));
const distVersion: string = JSON.parse(readFileSync(join(distDir, 'package.json'), 'utf8')).version;

/** The files the page uses; nothing else in the package is served. */
const ASSETS: Record<string, string> = {
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui.css': 'text/css; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

/** Where the page's assets are served: the version is in the path, so they can be cached for good. */
export const DOCS_ASSETS_PATH = `/docs/assets/${distVersion}`;

function escapeHtml(text: string): string {
  return text.replace(/[&<>"]/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

export function docsPage(options: { specUrl: string; title: string }): string {
  const assets = DOCS_ASSETS_PATH;
  // validatorUrl: null keeps Swagger UI from sending the document to its public validator.
  const config = JSON.stringify({
    url: options.specUrl,
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null,
  }).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${escapeHtml(options.title)}</title>
    <link rel="stylesheet" href="${assets}/swagger-ui.css" />
    <link rel="icon" type="image/png" href="${assets}/favicon-32x32.png" sizes="32x32" />
    <link rel="icon" type="image/png" href="${assets}/favicon-16x16.png" sizes="16x16" />
    <style>body { margin: 0; }</style>
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="${assets}/swagger-ui-bundle.js"></script>
    <script>window.ui = SwaggerUIBundle(${config});</script>
  </body>
</html>
`;
}

export function registerDocsRoutes<E extends Env>(
  app: Hono<E>,
  options: { specUrl: string; title: string },
): void {
  const page = docsPage(options);
  const cache = new Map<string, Promise<Buffer>>();
  app.get('/docs', (c) => c.html(page));
  app.get(`${DOCS_ASSETS_PATH}/:file`, async (c) => {
    const file = c.req.param('file');
    const type = ASSETS[file];
    if (!type) return c.notFound();
    let body = cache.get(file);
    if (!body) {
      body = readFile(join(distDir, file));
      cache.set(file, body);
      body.catch(() => cache.delete(file));
    }
    return c.body(new Uint8Array(await body), 200, {
      'content-type': type,
      'cache-control': 'public, max-age=31536000, immutable',
    });
  });
}
