// The wall at `/`: its files as the API serves them (types, caching, outside the OpenAPI document),
// then the page end to end in headless Chromium against the real API and a real worker (processes,
// the demo model): key entry, a Russian prompt, live progress, the image on the wall, the detail
// view, a canceled long generation, paging, and a reload that still knows the key. Screenshots of
// each step go to .easel/artifacts/wall/NN-name.png.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openApiDocument } from '../api/app.ts';
import type { GenerationListResource } from '../api/generations.schemas.ts';
import { createServicelessApp } from '../api/testing.ts';
import { WALL_DIR } from '../api/wall.routes.ts';
import { hashApiKey, updateApiKey } from '../db/api-keys.repository.ts';
import { registerModel } from '../db/models.repository.ts';
import type { GenerationResource } from '../shared/generation.schemas.ts';
import { DEMO_MODEL, DEMO_MODEL_ID } from './harness/models.ts';
import { startStack } from './harness/stack.ts';
import { readDockerfile, readDockerIgnore } from './infra/images.ts';

// The page's globals, for the functions this test runs in the browser (page.evaluate and
// waitForFunction): the project compiles without the DOM library.
// biome-ignore lint/suspicious/noExplicitAny: browser objects, checked by the assertions on them
declare const document: any, window: any, navigator: any, getComputedStyle: any, MutationObserver: any;

const ARTIFACTS = fileURLToPath(new URL('../.easel/artifacts/wall/', import.meta.url));

test('/ is the wall: a page whose script and stylesheet the API serves, pinned to their content', async () => {
  const app = createServicelessApp('the wall');
  const res = await app.request('/');
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(res.headers.get('cache-control'), 'no-cache');
  assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self'; style-src 'self'/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  const etag = res.headers.get('etag');
  assert.match(etag ?? '', /^"[\w-]{16}"$/);
  const html = await res.text();
  // Nothing from another host (no CDN): the only URLs are this server's own paths.
  assert.doesNotMatch(html, /(https?:)?\/\/[a-z0-9.-]+\.[a-z]/i);
  const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '');
  const assets = refs.filter((ref) => ref.startsWith('/wall/'));
  assert.deepEqual(assets.map((ref) => ref.replace(/\?v=[\w-]{16}$/, '?v=<hash>')).sort(), [
    '/wall/wall.css?v=<hash>',
    '/wall/wall.js?v=<hash>',
  ]);

  const again = await app.request('/', { headers: { 'if-none-match': etag ?? '' } });
  assert.equal(again.status, 304, 'an unchanged page is not sent again');

  for (const ref of assets) {
    const asset = await app.request(ref);
    assert.equal(asset.status, 200, ref);
    assert.equal(asset.headers.get('cache-control'), 'public, max-age=31536000, immutable', ref);
    const type = ref.includes('.js') ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8';
    assert.equal(asset.headers.get('content-type'), type, ref);
    assert.ok((await asset.text()).length > 1000, ref);
    const unpinned = await app.request(ref.replace(/\?.*$/, ''));
    assert.equal(unpinned.status, 200);
    assert.equal(unpinned.headers.get('cache-control'), 'no-cache', `${ref} without its hash is revalidated`);
    const stale = await app.request(ref.replace(/\?v=.*$/, '?v=0000000000000000'));
    assert.equal(stale.headers.get('cache-control'), 'no-cache', `${ref} with another hash is revalidated`);
  }
});

test('only the page and its two assets are served; none of it is in the OpenAPI document', async () => {
  const app = createServicelessApp('the wall');
  for (const path of [
    '/wall/index.html',
    '/wall/..%2fwall.routes.ts',
    '/wall/..%2f..%2fpackage.json',
    '/wall/',
    '/wall/wall.js.map',
    '/index.html',
  ]) {
    const res = await app.request(path);
    assert.equal(res.status, 404, path);
    assert.equal(res.headers.get('content-type'), 'application/problem+json', path);
  }
  const post = await app.request('/', { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  const paths = Object.keys(openApiDocument(app).paths ?? {});
  assert.ok(paths.includes('/v1/generations'), 'the document is the real one');
  assert.deepEqual(
    paths.filter((path) => path === '/' || path.startsWith('/wall') || path.startsWith('/docs')),
    [],
  );
});

test("the API image ships the page's files (read at boot, not imported: the import check cannot see them)", () => {
  const image = readDockerfile('infra/Dockerfile.api');
  const ignore = readDockerIgnore('infra/Dockerfile.api');
  const files = ['api/wall.routes.ts', ...readdirSync(WALL_DIR).map((name) => `api/wall/${name}`)];
  assert.ok(files.length >= 4, files.join());
  for (const file of files) {
    assert.ok(
      image.copied.some((path) => file === path || file.startsWith(`${path}/`)),
      `${file}: not copied by ${image.path}`,
    );
    assert.equal(
      ignore?.ignores(file) ?? false,
      false,
      `${file}: left out of the build context by ${ignore?.path}`,
    );
  }
});

// ---------------------------------------------------------------------------------------------

const RUSSIAN_PROMPT = 'Маяк на скале на рассвете, масляная живопись';
/** About ten seconds of denoising with the demo model here: still running when Cancel is pressed. */
const LONG = { width: 2048, height: 2048, steps: 150, num_images: 4 } as const;

test('the wall in a browser: key, a Russian prompt, live progress, the image, details, cancel, reload', {
  timeout: 240_000,
}, async (t) => {
  const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  if (!existsSync(executablePath)) {
    t.skip(`no Chromium at ${executablePath} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
    return;
  }
  const { chromium } = await import('playwright-core');
  await rm(ARTIFACTS, { recursive: true, force: true });
  await mkdir(ARTIFACTS, { recursive: true });

  const stack = await startStack('wall', { WARMUP_SIZE: '64' });
  const browser = await chromium.launch({
    executablePath,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    // A second model, registered with no worker: narrower limits, no negative prompt.
    await registerModel(stack.database.db, {
      ...DEMO_MODEL,
      id: 'turbo',
      capabilities: {
        ...DEMO_MODEL.capabilities,
        samplers: ['euler_a', 'lcm'],
        karras_samplers: [],
        default_sampler: 'euler_a',
        width: { min: 64, max: 1024, multiple_of: 64, default: 128 },
        steps: { min: 1, max: 8, default: 4 },
        negative_prompt: false,
        max_images: 2,
      },
    });
    // 2048×2048 is above the default MAX_PIXELS: the long generation needs it to run for seconds.
    await stack.startApi({ MAX_PIXELS: String(2048 * 2048), DEFAULT_MODEL: DEMO_MODEL_ID });
    await stack.startWorker({ WARMUP_SIZE: '64' });
    const origin = stack.baseUrl().replace(/\/$/, '');
    const s3Origin = new URL(stack.s3.endpoint).origin;

    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
    const requests: string[] = [];
    const elsewhere: string[] = [];
    await context.route('**/*', (route) => {
      const url = route.request().url();
      requests.push(url);
      if (url.startsWith(`${origin}/`) || url.startsWith(`${s3Origin}/`)) return route.continue();
      elsewhere.push(url);
      return route.abort('internetdisconnected');
    });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(String(error)));
    // Console errors other than the refused requests the test makes on purpose (a wrong key):
    // a Content-Security-Policy violation, say.
    const consoleErrors: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) {
        consoleErrors.push(message.text());
      }
    });
    let shot = 0;
    /** The whole page, or (with a modal dialog open) what the viewport shows. */
    const screenshot = async (name: string, fullPage = true) => {
      shot++;
      await page.screenshot({ path: `${ARTIFACTS}${String(shot).padStart(2, '0')}-${name}.png`, fullPage });
    };
    // The text as shown (a definition list's terms and values on lines of their own).
    // biome-ignore lint/performance/useDomNodeTextContent: the rendered text is what is checked
    const text = (selector: string) => page.locator(selector).innerText();
    const waitForText = (selector: string, pattern: RegExp, timeout = 30_000) =>
      page.waitForFunction(
        ({ selector, source, flags }) =>
          new RegExp(source, flags).test(document.querySelector(selector)?.textContent ?? ''),
        { selector, source: pattern.source, flags: pattern.flags },
        { timeout },
      );

    // 1. First visit: no key yet, so nothing to show but the key entry.
    await page.goto(`${origin}/`);
    await waitForText('#wall-status', /Enter your API key/);
    assert.equal(await page.locator('#submit').isDisabled(), true);
    assert.equal(await page.locator('#key-input').isVisible(), true);
    await screenshot('first-visit');

    // Every control has a label: by <label for>, or an aria-label.
    const unlabeled = await page.evaluate(() =>
      [...document.querySelectorAll('input, select, textarea, button')]
        .filter((el) => {
          const labels = el.labels;
          const named = el.getAttribute('aria-label') || (el.tagName === 'BUTTON' && el.textContent?.trim());
          return !named && !(labels && labels.length > 0);
        })
        .map((el) => el.outerHTML.slice(0, 80)),
    );
    assert.deepEqual(unlabeled, []);
    const placeholder = await page.locator('#prompt').getAttribute('placeholder');
    assert.match(placeholder ?? '', /[а-яё]/i, 'the prompt box invites Russian');
    assert.match(placeholder ?? '', /[a-z]{4}/, 'and English');

    // 2. A wrong key is refused in words.
    await page.locator('#key-input').fill('esl_not-a-real-key');
    await page.locator('#key-input').press('Enter');
    await waitForText('#key-status', /refused: The API key is unknown or revoked/);
    await screenshot('wrong-key');

    // 3. The right key: the models load, the form takes the demo model's limits.
    await page.locator('#key-input').fill(stack.apiKey);
    await page.locator('#key-save').click();
    await waitForText('#key-status', /Using the key ending in/);
    await waitForText('#wall-status', /No generations yet/);
    assert.equal(await page.locator('#key-form').isVisible(), false, 'the key entry folds away');
    assert.equal(await page.locator('#key-change').isVisible(), true);
    assert.equal(await page.locator('#model').inputValue(), DEMO_MODEL_ID);
    assert.deepEqual(
      await page.evaluate(() =>
        ['width', 'steps', 'num_images', 'guidance_scale'].map((id) => {
          const input = document.getElementById(id);
          return [id, input.min, input.max, input.step, input.value];
        }),
      ),
      [
        ['width', '64', '2048', '8', '512'],
        ['steps', '1', '150', '1', '25'],
        ['num_images', '1', '4', '1', '1'],
        ['guidance_scale', '0', '30', '0.1', '7.5'],
      ],
    );
    assert.equal(await page.locator('#negative_prompt').isVisible(), true, 'the demo model takes one');
    const samplers = await page
      .locator('#scheduler option')
      .evaluateAll((options) => options.map((o) => o.value));
    assert.deepEqual(samplers, ['', 'euler', 'euler_a', 'ddim', 'lcm', 'dpmpp_2m']);
    assert.match((await page.locator('#scheduler option').first().textContent()) ?? '', /Default \(Euler\)/);
    await screenshot('key-accepted');
    // Another model: its own limits, samplers and no negative prompt.
    await page.locator('#model').selectOption('turbo');
    assert.deepEqual(
      await page.evaluate(() =>
        ['width', 'steps', 'num_images'].map((id) => {
          const input = document.getElementById(id);
          return [id, input.min, input.max, input.step, input.value];
        }),
      ),
      [
        ['width', '64', '1024', '64', '128'],
        ['steps', '1', '8', '1', '4'],
        ['num_images', '1', '2', '1', '1'],
      ],
    );
    assert.deepEqual(
      await page.locator('#scheduler option').evaluateAll((options) => options.map((o) => o.value)),
      ['', 'euler_a', 'lcm'],
    );
    assert.equal(await page.locator('#negative_prompt').isVisible(), false);
    assert.equal(await page.locator('#negative_prompt').isDisabled(), true);
    assert.match(await text('#model-hint'), /No worker holds it now/);
    await screenshot('other-model');
    await page.locator('#model').selectOption(DEMO_MODEL_ID);
    assert.equal(await page.locator('#negative_prompt').isVisible(), true);

    // A keyboard user sees where the focus is.
    await page.locator('#prompt').focus();
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Tab');
    const focus = await page.evaluate(() => {
      const el = document.activeElement;
      const style = getComputedStyle(el);
      return {
        id: el.id,
        visible: el.matches(':focus-visible'),
        outline: style.outlineStyle,
        width: style.outlineWidth,
      };
    });
    assert.deepEqual(focus, { id: 'prompt', visible: true, outline: 'solid', width: '3px' });

    // 4. The API's own refusal, in words, next to the field it names.
    await page.locator('#prompt').fill('   ');
    await page.locator('#submit').click();
    await page.locator('#create-error').waitFor({ state: 'visible' });
    assert.match(await text('#create-error'), /invalid field[\s\S]*Prompt: /);
    assert.equal(await page.locator('#prompt').getAttribute('aria-invalid'), 'true');
    assert.notEqual(await text('#prompt-error'), '');
    await screenshot('api-error');

    // 5. A Russian prompt, small and quick; its states arrive live.
    await page.evaluate(() => {
      const seen: string[] = [];
      window.seen = seen;
      const status = document.getElementById('live-status');
      new MutationObserver(() => {
        if (seen.at(-1) !== status.textContent) seen.push(status.textContent ?? '');
      }).observe(status, { childList: true, characterData: true, subtree: true });
    });
    await page.locator('#prompt').fill(RUSSIAN_PROMPT);
    await page.locator('#width').fill('64');
    await page.locator('#height').fill('64');
    await page.locator('#steps').fill('12');
    await page.locator('#seed').fill('1234');
    await page.locator('#submit').click();
    await page.locator('#live').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#create-error').isVisible(), false);
    await screenshot('submitted');
    await waitForText('#live-status', /^Done$/);
    const seen = await page.evaluate(() => window.seen);
    assert.match(seen[0] ?? '', /^(Queued|Running)/, seen.join(' | '));
    assert.equal(seen.at(-1), 'Done', seen.join(' | '));
    assert.match(await text('#announcer'), /Done/, 'the live region says so');
    assert.match(await text('#live-detail'), /in English: “.+”/);

    // 6. The image is on the wall, loaded from its presigned URL.
    const firstCard = page.locator('#wall .card-open').first();
    const image = firstCard.locator('img');
    await image.waitFor();
    await page.waitForFunction(() => (document.querySelector('#wall .card-open img')?.naturalWidth ?? 0) > 0);
    assert.equal(await image.getAttribute('alt'), RUSSIAN_PROMPT);
    assert.ok((await image.getAttribute('src'))?.startsWith(`${s3Origin}/`));
    await screenshot('on-the-wall');

    // 7. The detail view, opened from the keyboard: prompt, translation, parameters, curl.
    await firstCard.focus();
    await page.keyboard.press('Enter');
    const dialog = page.locator('#detail');
    await dialog.waitFor({ state: 'visible' });
    await screenshot('detail', false);
    const details = await text('#detail-body');
    assert.match(details, new RegExp(`Prompt\\s+${RUSSIAN_PROMPT}`));
    assert.match(details, /In English\s+\S+/);
    assert.match(details, /Size\s+64×64/);
    assert.match(details, /Seed\s+1234/);
    assert.match(details, /Timings\s+.*run \d/);
    assert.match((await page.locator('#detail-images a').first().getAttribute('href')) ?? '', /^http/);
    await page.waitForFunction(() => (document.querySelector('#detail-images img')?.naturalWidth ?? 0) > 0);
    const curl = await page.locator('#detail-curl-text').inputValue();
    assert.match(curl, /^curl -s -X POST 'http:\/\/127\.0\.0\.1:\d+\/v1\/generations'/);
    assert.match(curl, /-H "Authorization: Bearer \$EASEL_API_KEY"/);
    assert.ok(!curl.includes(stack.apiKey), 'never the key itself');
    const body = JSON.parse(/-d '([\s\S]*)'$/.exec(curl)?.[1] ?? '{}') as Record<string, unknown>;
    assert.deepEqual(body, {
      model: DEMO_MODEL_ID,
      prompt: RUSSIAN_PROMPT,
      width: 64,
      height: 64,
      steps: 12,
      guidance_scale: 7.5,
      seed: 1234,
      num_images: 1,
    });
    await page.locator('#detail-curl').click();
    await waitForText('#detail-status', /Copied/);
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), curl);
    await screenshot('detail-curl-copied', false);
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await firstCard.evaluate((el) => el === document.activeElement), true, 'focus returns');

    // 8. Run again with this seed: a second generation with the same parameters.
    await firstCard.click();
    await page.locator('#detail-again').click();
    await page.waitForFunction(() => document.querySelectorAll('#wall .card-open img').length === 2, null, {
      timeout: 30_000,
    });
    await waitForText('#live-status', /^Done$/);
    const list = (await (await stack.request('/v1/generations')).json()) as GenerationListResource;
    assert.equal(list.data.length, 2);
    assert.deepEqual(
      list.data.map((g) => [g.prompt, g.seed, g.steps, g.status]),
      [
        [RUSSIAN_PROMPT, 1234, 12, 'succeeded'],
        [RUSSIAN_PROMPT, 1234, 12, 'succeeded'],
      ],
    );

    // 9. A long one, canceled while it runs.
    await page.locator('#prompt').fill('a very long exposure of the night sky');
    await page.locator('#seed').fill('');
    for (const [field, value] of Object.entries(LONG)) await page.locator(`#${field}`).fill(String(value));
    await page.locator('#submit').click();
    await waitForText('#live-status', /^Running: step \d+ of 150/);
    await waitForText('#live-detail', /about .* left/);
    assert.match(await text('#announcer'), /Running: \d+% done/);
    await screenshot('running');
    assert.equal(await firstCard.getAttribute('data-status'), 'running', 'the running one leads the wall');
    await page.locator('#live-cancel').click();
    await waitForText('#live-status', /^Canceled$/);
    await screenshot('canceled');
    const canceled = (await (
      await stack.request('/v1/generations?limit=1')
    ).json()) as GenerationListResource;
    const [long] = canceled.data as [GenerationResource];
    assert.equal(long.status, 'canceled');
    assert.ok((long.progress?.step ?? 150) < 150, 'it stopped before its last step');
    await waitForText('#wall .card-open .badge', /^canceled$/);

    // 10. Older generations: 30 more (made straight in the queue), paged in as the wall scrolls.
    for (let i = 0; i < 30; i++) await stack.enqueue({ prompt: `filler ${i}` });
    await page.reload();
    await waitForText('#key-status', /Using the key ending in/);
    await page.waitForFunction(() => document.querySelectorAll('#wall .card').length >= 24);
    assert.equal(await page.locator('#key-form').isVisible(), false, 'the key is remembered, not asked for');
    assert.equal(await page.locator('#key-input').inputValue(), '', 'nor shown');
    await screenshot('reloaded');
    await page.locator('#wall-more').scrollIntoViewIfNeeded();
    await waitForText('#wall-end', /That is all: 33 generations/);
    assert.equal(await page.locator('#wall .card').count(), 33);
    const prompts = await page.locator('#wall .card-caption').allInnerTexts();
    assert.deepEqual(prompts.slice(-3), [
      'a very long exposure of the night sky',
      RUSSIAN_PROMPT,
      RUSSIAN_PROMPT,
    ]);
    // The fillers finish while the page is open: their cards get their images without a reload.
    await page.waitForFunction(
      () => document.querySelectorAll('#wall .card-open[data-status="succeeded"]').length === 32,
      null,
      { timeout: 60_000 },
    );
    // Images load lazily, as they come near the viewport: bring each there once.
    for (const img of await page.locator('#wall .card-open img').all()) await img.scrollIntoViewIfNeeded();
    await page.waitForFunction(() =>
      [...document.querySelectorAll('#wall .card-open img')].every(
        (img) => img.complete && img.naturalWidth > 0,
      ),
    );
    assert.equal(await page.locator('#wall .card-open img').count(), 32);
    await screenshot('history-scrolled');

    // 11. The same page on a wide screen.
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.evaluate(() => window.scrollTo(0, 0));
    await screenshot('desktop');

    // A daily quota used up: the create is refused, naming the limit and the wait until 00:00 UTC
    // in words rather than tens of thousands of seconds.
    const key = await stack.database.db
      .selectFrom('api_keys')
      .select('id')
      .where('key_hash', '=', hashApiKey(stack.apiKey))
      .executeTakeFirstOrThrow();
    await updateApiKey(stack.database.db, key.id, { imagesPerDay: 0 });
    await page.locator('#prompt').fill('one image too many');
    await page.locator('#submit').click();
    await page.locator('#create-error').waitFor({ state: 'visible' });
    assert.match(
      await text('#create-error'),
      /may create 0 images per UTC day[\s\S]*Try again in (\d+ h \d+ min|\d+ minutes|\d+ seconds?)\./,
    );
    await screenshot('quota');
    await updateApiKey(stack.database.db, key.id, { imagesPerDay: null });

    // Live states came over the event streams, not by polling.
    const paths = requests.map((url) => new URL(url).pathname);
    assert.ok(paths.includes('/v1/events'));
    assert.ok(paths.some((path) => /^\/v1\/generations\/[\w-]+\/events$/.test(path)));
    assert.deepEqual(
      paths.filter((path) => /^\/v1\/generations\/[\w-]+$/.test(path)),
      [],
      'no polling while the streams work',
    );

    // 12. An API without event streams (as before them, or behind a proxy that drops them): the
    // page finds out from the 404 and polls instead, once a second.
    const old = await context.newPage();
    const oldRequests: string[] = [];
    old.on('request', (request) => oldRequests.push(new URL(request.url()).pathname));
    await old.route(/\/events$/, (route) =>
      route.fulfill({
        status: 404,
        contentType: 'application/problem+json',
        body: JSON.stringify({
          type: 'urn:easel:problem:not_found',
          title: 'Not found',
          status: 404,
          code: 'not_found',
        }),
      }),
    );
    await old.goto(`${origin}/`);
    await old.locator('#submit').waitFor({ state: 'visible' });
    await old.waitForFunction(() => !document.querySelector('#submit').disabled);
    await old.locator('#prompt').fill('без потоков: опрос раз в секунду');
    await old.locator('#width').fill('64');
    await old.locator('#height').fill('64');
    await old.locator('#steps').fill('4');
    await old.locator('#submit').click();
    await old.waitForFunction(() => document.querySelector('#live-status')?.textContent === 'Done', null, {
      timeout: 30_000,
    });
    await old.waitForFunction(() => (document.querySelector('#wall .card-open img')?.naturalWidth ?? 0) > 0);
    await old.screenshot({ path: `${ARTIFACTS}${String(++shot).padStart(2, '0')}-polling-fallback.png` });
    const streamTries = oldRequests.filter((path) => path.endsWith('/events'));
    assert.deepEqual(
      streamTries.map((path) => path.replace(/[\w-]{36}/, '<id>')),
      ['/v1/events', '/v1/generations/<id>/events'],
      'each stream tried once, then no more',
    );
    assert.ok(
      oldRequests.some((path) => /^\/v1\/generations\/[\w-]{36}$/.test(path)),
      'it polled',
    );
    await old.close();

    assert.deepEqual(elsewhere, [], 'no request left this server and its object store');
    assert.deepEqual(
      requests.filter((url) => url.includes(stack.apiKey)),
      [],
      'the key is never in a URL',
    );
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(consoleErrors, []);
  } finally {
    await browser.close();
    await stack.stop();
  }
});
