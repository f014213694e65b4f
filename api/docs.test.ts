// /docs works without internet: the page and everything it loads come from this server.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { serve } from '@hono/node-server';
import { DOCS_ASSETS_PATH } from './docs.routes.ts';
import { createServicelessApp } from './testing.ts';

test('/docs is a page whose scripts, styles and icons are all served by the API itself', async () => {
  const app = createServicelessApp('/docs');
  const res = await app.request('/docs');
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
  const html = await res.text();
  assert.match(html, /"url":"\/openapi\.json"/);
  assert.match(html, /"validatorUrl":null/);
  // No absolute URL at all, so no other host (a CDN) is ever asked for anything.
  assert.doesNotMatch(html, /(https?:)?\/\/[a-z0-9.-]+/i);

  const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '');
  assert.deepEqual(refs.map((r) => r.replace(DOCS_ASSETS_PATH, '<assets>')).sort(), [
    '<assets>/favicon-16x16.png',
    '<assets>/favicon-32x32.png',
    '<assets>/swagger-ui-bundle.js',
    '<assets>/swagger-ui.css',
  ]);
  for (const ref of refs) {
    const asset = await app.request(ref);
    assert.equal(asset.status, 200, ref);
    assert.match(asset.headers.get('cache-control') ?? '', /max-age=31536000, immutable/, ref);
    const body = Buffer.from(await asset.arrayBuffer());
    assert.ok(body.length > 0, ref);
    if (ref.endsWith('.js')) {
      assert.match(asset.headers.get('content-type') ?? '', /^text\/javascript/);
      assert.ok(body.includes('SwaggerUIBundle'), 'the bundle defines SwaggerUIBundle');
    }
    if (ref.endsWith('.css')) assert.match(asset.headers.get('content-type') ?? '', /^text\/css/);
    if (ref.endsWith('.png')) assert.equal(asset.headers.get('content-type'), 'image/png');
  }
});

test('only the page assets are served from the package, nothing else in it', async () => {
  const app = createServicelessApp('/docs');
  for (const path of [
    `${DOCS_ASSETS_PATH}/package.json`,
    `${DOCS_ASSETS_PATH}/..%2f..%2fpackage.json`,
    `${DOCS_ASSETS_PATH}/swagger-ui-bundle.js.map`,
    '/docs/assets/0.0.0/swagger-ui-bundle.js',
  ]) {
    const res = await app.request(path);
    assert.equal(res.status, 404, path);
  }
});

test('/docs renders in a browser that can reach nothing but this server', async (t) => {
  const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    t.skip(`no Chromium at ${executablePath} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
    return;
  }
  const { chromium } = await import('playwright-core');
  const server = serve({ fetch: createServicelessApp('/docs').fetch, port: 0, hostname: '127.0.0.1' });
  await once(server, 'listening');
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const browser = await chromium.launch({
    executablePath,
    args: [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
    ],
  });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // Offline, as far as the page can tell: every request for anything but this server fails.
    const elsewhere: string[] = [];
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith(`${origin}/`)) return route.continue();
      elsewhere.push(url);
      return route.abort('internetdisconnected');
    });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    await page.goto(`${origin}/docs`);
    await page.locator('.swagger-ui .info .title', { hasText: 'Easel' }).waitFor({ timeout: 30_000 });
    await page.locator('.opblock-summary-path', { hasText: '/v1/generations/{id}' }).first().waitFor();
    assert.ok((await page.locator('.opblock').count()) >= 8, 'the operations are listed');
    if (process.env.DOCS_SCREENSHOT) await page.screenshot({ path: process.env.DOCS_SCREENSHOT });
    assert.deepEqual(elsewhere, [], 'no request left this server');
    assert.deepEqual(pageErrors, []);
  } finally {
    await browser.close();
    server.close();
  }
});
