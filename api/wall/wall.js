// Easel's wall: create generations and watch this key's generations, newest first. Plain browser
// JavaScript (a module script, so strict and deferred), no framework, no build step, nothing from
// a CDN; it talks only to the Easel API that serves it, with the key from local storage.
//
// Live updates: EventSource cannot send an Authorization header, so event streams are read with
// fetch() and a small server-sent-events parser. A generation being watched is followed on
// GET /v1/generations/{id}/events; when the API has no such stream (404/405, or a 200 that is not
// text/event-stream) the page remembers that and polls GET /v1/generations/{id} every second
// instead; a stream that is refused for now (429 too many streams, 503) is polled too. The wall
// listens on GET /v1/events (one stream for all of the key's generations, new ones included); without
// it, each unfinished card is watched as above. Streams that drop are resumed with Last-Event-ID.

const KEY_STORAGE = 'easel.apiKey';
const MODEL_STORAGE = 'easel.model';
const PAGE_SIZE = 24;
const POLL_MS = 1000;
const DEFAULT_RETRY_MS = 3000;
const FEED_WAIT_MS = 3000;
const FINAL = new Set(['succeeded', 'failed', 'canceled']);
const SAMPLER_NAMES = {
  euler: 'Euler',
  euler_a: 'Euler ancestral',
  ddim: 'DDIM',
  lcm: 'LCM',
  dpmpp_2m: 'DPM++ 2M',
};
const FIELD_IDS = [
  'prompt',
  'model',
  'width',
  'height',
  'steps',
  'guidance_scale',
  'scheduler',
  'num_images',
  'seed',
  'karras',
  'negative_prompt',
];

const $ = (id) => {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing from the page`);
  return found;
};

/** A DOM element: h('p', { className: 'x' }, 'text', child). Text is always text, never HTML. */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name in node && !name.includes('-')) node[name] = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// ---------------------------------------------------------------------------------------------
// The key: in local storage only, sent as a header, never in a URL.

function readStoredKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) ?? '';
  } catch {
    return '';
  }
}

function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage disabled: the key lasts as long as the page.
  }
}

function storedModel() {
  try {
    return localStorage.getItem(MODEL_STORAGE) ?? '';
  } catch {
    return '';
  }
}

let apiKey = readStoredKey();

// ---------------------------------------------------------------------------------------------
// The API: JSON in and out; errors are problem+json documents, turned into words.

class ApiProblem extends Error {
  constructor(status, problem, retryAfter) {
    super(problem?.detail ?? problem?.title ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem ?? {};
    this.retryAfter = retryAfter;
  }
}

function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${apiKey}`, ...extra };
}

async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const init = {
    method,
    headers: authHeaders({ Accept: 'application/json', ...headers }),
    cache: 'no-store',
    signal,
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new ApiProblem(0, {
      detail: 'The Easel API could not be reached. Check the connection; the page keeps trying.',
    });
  }
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const problem = new ApiProblem(res.status, data, res.headers.get('Retry-After'));
    if (res.status === 401) keyRefused(problem);
    throw problem;
  }
  return data;
}

/** A problem in words: its detail (or title), and how long to wait when the API says so. */
function problemSummary(error) {
  if (!(error instanceof ApiProblem)) return `Something went wrong: ${error?.message ?? error}`;
  const { problem, status, retryAfter } = error;
  let text = problem.detail || problem.title || `The API answered with status ${status}.`;
  if (status === 401) text += ' Check the API key above.';
  if (retryAfter && /^\d+$/.test(retryAfter)) text += ` Try again in ${waitText(Number(retryAfter))}.`;
  return text;
}

/** Retry-After in words: seconds for a short wait, hours for a daily quota's reset. */
function waitText(seconds) {
  if (seconds < 90) return `${seconds} second${seconds === 1 ? '' : 's'}`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `${minutes} minutes`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function fieldLabel(field) {
  const label = document.querySelector(`label[for="${CSS.escape(field)}"]`);
  return label ? label.textContent.replace(/\s+—.*$/, '').trim() : field;
}

/** Shows a problem in `box` (a role=alert element): its summary, then each field's message. */
function showProblem(box, error, { markFields = false } = {}) {
  box.replaceChildren(h('p', {}, problemSummary(error)));
  const errors =
    error instanceof ApiProblem && Array.isArray(error.problem.errors) ? error.problem.errors : [];
  if (errors.length > 0) {
    box.append(
      h(
        'ul',
        {},
        errors.map((e) => h('li', {}, `${fieldLabel(String(e.field).split('.')[0])}: ${e.message}`)),
      ),
    );
  }
  if (markFields) {
    for (const e of errors) {
      const id = String(e.field).split('.')[0];
      if (!FIELD_IDS.includes(id)) continue;
      $(id).setAttribute('aria-invalid', 'true');
      $(`${id}-error`).textContent = e.message;
      if (id === 'negative_prompt' || id === 'karras' || id === 'scheduler') $('params').open = true;
    }
  }
  box.hidden = false;
}

function clearProblem(box) {
  box.hidden = true;
  box.replaceChildren();
}

function clearFieldErrors() {
  for (const id of FIELD_IDS) {
    $(id).removeAttribute('aria-invalid');
    $(`${id}-error`).textContent = '';
  }
}

// ---------------------------------------------------------------------------------------------
// Server-sent events, read from a fetch() body.

/** The messages of an SSE body (WHATWG HTML's format): { id?, event, data?, retry? } per block. */
async function* sseMessages(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let message = { event: 'message' };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      for (;;) {
        const match = /\r\n|\n|\r(?!$)/.exec(buffer);
        if (!match) break;
        const line = buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
        if (line === '') {
          if (message.data !== undefined || message.id !== undefined || message.retry !== undefined) {
            yield message;
          }
          message = { event: 'message' };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') message.data = message.data === undefined ? value : `${message.data}\n${value}`;
        else if (field === 'event') message.event = value;
        else if (field === 'id' && !value.includes('\0')) message.id = value;
        else if (field === 'retry' && /^\d+$/.test(value)) message.retry = Number(value);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function openStream(path, lastEventId, signal) {
  const headers = authHeaders({ Accept: 'text/event-stream' });
  if (lastEventId) headers['Last-Event-ID'] = lastEventId;
  return fetch(path, { headers, cache: 'no-store', signal });
}

const isEventStream = (res) =>
  res.status === 200 && (res.headers.get('Content-Type') ?? '').startsWith('text/event-stream');

/** A 404/405 (or a 200 of another type): this API has no such stream; ask no more. */
const streamMissing = (res) => res.status === 404 || res.status === 405 || res.ok;

async function problemOf(res) {
  let data;
  try {
    data = await res.json();
  } catch {
    data = undefined;
  }
  return new ApiProblem(res.status, data, res.headers.get('Retry-After'));
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

function retryAfterMs(res, fallback) {
  const value = res.headers.get('Retry-After');
  return value && /^\d+$/.test(value) ? Number(value) * 1000 : fallback;
}

// ---------------------------------------------------------------------------------------------
// State: the generations seen, newest first, and what is being watched. A "session" is one key:
// changing or forgetting the key ends every stream and request of the previous one.

const generations = new Map();
/**
 * The latest event of each generation older than the pages loaded so far: a page read before the
 * event but answered after it would otherwise show a state the stream has already moved past.
 */
const pending = new Map();
const PENDING_MAX = 500;
const order = [];
const cards = new Map();
let models = [];
let nextCursor = null;
let hasMore = false;
let wallLoaded = false;
let loadingPage = false;
let liveId;
let detailId;
let detailOpener;
let session = 0;
let sessionAbort = new AbortController();

/** 'unknown' until the first try; 'yes' or 'no': whether GET /v1/generations/{id}/events exists. */
let generationStreams = 'unknown';
/**
 * GET /v1/events: 'connecting' (at start, or resuming after a drop: it loses nothing), 'live', or
 * 'down' (absent or refused: then each unfinished card is watched on its own).
 */
let feedState = 'connecting';
const watchers = new Map();
const polled = new Set();
let pollTimer;
let polling = false;

const createdMs = (g) => Date.parse(g.created_at);

/** Newest first, as the API lists them: by created_at, then id. */
function newerThan(a, b) {
  const diff = createdMs(a) - createdMs(b);
  return diff !== 0 ? diff > 0 : a.id > b.id;
}

/** Whether `incoming` is older news than `current` (two sources, or a slow answer, can cross). */
function isStale(incoming, current) {
  if (!current) return false;
  if (FINAL.has(current.status)) return !FINAL.has(incoming.status);
  if (incoming.attempts < current.attempts) return true;
  if (incoming.attempts > current.attempts) return false;
  if (incoming.status === 'queued' && current.status === 'running') return true;
  if (incoming.status === 'running' && current.status === 'running') {
    const before = current.progress?.step ?? 0;
    const after = incoming.progress?.step ?? 0;
    return after < before || (after === before && current.cancel_requested && !incoming.cancel_requested);
  }
  return false;
}

/** Takes a newer state of a generation: stores it and updates everything that shows it. */
function upsert(g, { force = false } = {}) {
  const current = generations.get(g.id);
  if (isStale(g, current)) return current;
  generations.set(g.id, g);
  if (!current) {
    const last = generations.get(order[order.length - 1]);
    // Older than the loaded pages: paging will bring it in its place, then this state.
    if (!force && hasMore && last && newerThan(last, g)) {
      generations.delete(g.id);
      if (!isStale(g, pending.get(g.id))) {
        pending.delete(g.id);
        pending.set(g.id, g);
        if (pending.size > PENDING_MAX) pending.delete(pending.keys().next().value);
      }
      return g;
    }
    insertCard(g);
  } else {
    renderCard(g);
  }
  if (g.id === liveId) renderLive();
  if (g.id === detailId) renderDetail();
  if (!FINAL.has(g.status) && feedState === 'down') watch(g.id);
  renderWallStatus();
  return g;
}

// ---------------------------------------------------------------------------------------------
// Watching one generation: its event stream when the API has one, else polling.

function watch(id) {
  const g = generations.get(id);
  if (!g || FINAL.has(g.status) || watchers.has(id) || polled.has(id)) return;
  if (generationStreams === 'no') {
    startPolling(id);
    return;
  }
  const controller = new AbortController();
  const stop = () => controller.abort();
  sessionAbort.signal.addEventListener('abort', stop, { once: true });
  watchers.set(id, controller);
  const mine = session;
  followStream(id, controller.signal).then(
    (outcome) => {
      watchers.delete(id);
      sessionAbort.signal.removeEventListener('abort', stop);
      if (outcome === 'poll' && mine === session) startPolling(id);
    },
    () => watchers.delete(id),
  );
}

/** Resolves 'done' after the final event, 'poll' when polling must take over, 'stopped'. */
async function followStream(id, signal) {
  let lastEventId;
  let retryMs = DEFAULT_RETRY_MS;
  let failures = 0;
  while (!signal.aborted) {
    let res;
    try {
      res = await openStream(`/v1/generations/${encodeURIComponent(id)}/events`, lastEventId, signal);
    } catch {
      if (signal.aborted) return 'stopped';
      if (++failures >= 3) return 'poll';
      await sleep(retryMs, signal);
      continue;
    }
    if (!isEventStream(res)) {
      const problem = await problemOf(res);
      if (res.status === 401) {
        keyRefused(problem);
        return 'stopped';
      }
      if (streamMissing(res)) generationStreams = 'no';
      return 'poll';
    }
    generationStreams = 'yes';
    failures = 0;
    try {
      for await (const message of sseMessages(res.body)) {
        if (message.id !== undefined) lastEventId = message.id;
        if (message.retry !== undefined) retryMs = message.retry;
        if (message.data === undefined) continue;
        const event = JSON.parse(message.data);
        if (event?.generation?.id === id) upsert(event.generation);
      }
    } catch {
      if (signal.aborted) return 'stopped';
    }
    if (FINAL.has(generations.get(id)?.status)) return 'done';
    // Ended before the final event (the API restarted, or this reader fell behind): resume.
    await sleep(retryMs, signal);
  }
  return 'stopped';
}

function startPolling(id) {
  polled.add(id);
  pollTimer ??= setInterval(pollOnce, POLL_MS);
}

async function pollOnce() {
  if (polling) return;
  polling = true;
  const mine = session;
  try {
    await Promise.all(
      [...polled].map(async (id) => {
        try {
          const g = await api(`/v1/generations/${encodeURIComponent(id)}`, { signal: sessionAbort.signal });
          if (mine !== session) return;
          upsert(g);
          if (FINAL.has(g.status)) polled.delete(id);
          if (id === liveId) clearProblem($('live-error'));
        } catch (error) {
          if (mine !== session) return;
          if (error instanceof ApiProblem && (error.status === 404 || error.status === 401))
            polled.delete(id);
          if (id === liveId) showProblem($('live-error'), error);
        }
      }),
    );
  } finally {
    polling = false;
    if (polled.size === 0 && pollTimer !== undefined) {
      clearInterval(pollTimer);
      pollTimer = undefined;
    }
  }
}

/**
 * The key's own stream: every generation's changes, new ones included. `onReady` is called once
 * the stream has sent its opening state (or is known to be unavailable): the wall's first page is
 * read only then, so that whatever changes after that read arrives on the stream. (A page read
 * first could show a generation running that finished before the stream opened: the stream, which
 * opens with the queued and running ones only, would never mention it again.)
 */
async function runFeed(signal, onReady) {
  let lastEventId;
  let retryMs = DEFAULT_RETRY_MS;
  while (!signal.aborted) {
    let res;
    try {
      res = await openStream('/v1/events', lastEventId, signal);
    } catch {
      if (signal.aborted) return;
      feedDown();
      onReady();
      await sleep(retryMs, signal);
      continue;
    }
    if (!isEventStream(res)) {
      const problem = await problemOf(res);
      feedDown();
      onReady();
      if (res.status === 401) return keyRefused(problem);
      if (streamMissing(res)) return;
      await sleep(retryAfterMs(res, 15_000), signal);
      continue;
    }
    feedState = 'live';
    try {
      for await (const message of sseMessages(res.body)) {
        if (message.id !== undefined) lastEventId = message.id;
        if (message.retry !== undefined) retryMs = message.retry;
        // A bare `id:` line ends the opening state.
        if (message.data === undefined) {
          if (message.id !== undefined) onReady();
          continue;
        }
        const event = JSON.parse(message.data);
        if (event?.generation?.id) upsert(event.generation);
      }
    } catch {
      if (signal.aborted) return;
    }
    // Dropped: resuming with Last-Event-ID loses nothing, so the cards wait for it unwatched.
    feedState = 'connecting';
    await sleep(retryMs, signal);
  }
}

/** Without the key's stream, every unfinished card is watched on its own. */
function feedDown() {
  feedState = 'down';
  for (const [id, g] of generations) if (!FINAL.has(g.status)) watch(id);
}

// ---------------------------------------------------------------------------------------------
// Words for states.

function formatMs(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60_000);
  return `${minutes} min ${Math.round((ms % 60_000) / 1000)} s`;
}

function etaText(g) {
  if (!g.eta || FINAL.has(g.status)) return '';
  const seconds = Math.round((Date.parse(g.eta) - Date.now()) / 1000);
  if (seconds <= 1) return 'finishing any moment now';
  return `about ${formatMs(seconds * 1000).replace(/\.0 s$/, ' s')} left`;
}

function shortStatus(g) {
  if (g.cancel_requested && !FINAL.has(g.status)) return 'canceling';
  if (g.status === 'running' && g.progress) return `running ${percent(g)}%`;
  return g.status;
}

const percent = (g) => (g.progress ? Math.floor((100 * g.progress.step) / g.progress.total) : 0);

function statusText(g) {
  switch (g.status) {
    case 'queued':
      if (g.cancel_requested) return 'Canceling…';
      if (g.live_workers === 0)
        return `Queued: no worker of ${g.model ?? 'its model'} is running, so it waits for one`;
      if (g.queue_position === 0) return 'Queued: next in line';
      if (typeof g.queue_position === 'number') {
        return `Queued: ${g.queue_position} ahead of it`;
      }
      return 'Queued';
    case 'running':
      if (g.cancel_requested) return 'Canceling: it stops after the current step';
      if (g.progress) return `Running: step ${g.progress.step} of ${g.progress.total} (${percent(g)}%)`;
      return 'Running: preparing';
    case 'succeeded':
      return g.outputs.length === 1 ? 'Done' : `Done: ${g.outputs.length} images`;
    case 'failed':
      return `Failed: ${g.error?.message ?? 'no reason given'}`;
    case 'canceled':
      return 'Canceled';
    default:
      return g.status;
  }
}

let lastAnnounced = '';
function announce(text) {
  if (text === lastAnnounced) return;
  lastAnnounced = text;
  $('announcer').textContent = text;
}

/** What a screen reader hears about the live generation: status changes and each quarter. */
function announcement(g) {
  if (g.status === 'running' && g.progress && !g.cancel_requested) {
    return `Running: ${Math.floor(percent(g) / 25) * 25}% done`;
  }
  return statusText(g);
}

// ---------------------------------------------------------------------------------------------
// Images: presigned URLs are minted on every read, so an image is (re)loaded only when its output
// changes; one that fails to load (its URL expired) gets fresh URLs once.

function setImage(img, g, output) {
  if (img.dataset.sha === output.sha256 && img.dataset.failed !== '1') return;
  img.dataset.sha = output.sha256;
  img.dataset.failed = '';
  img.onerror = () => {
    if (img.dataset.retried === '1') return;
    img.dataset.retried = '1';
    img.dataset.failed = '1';
    api(`/v1/generations/${encodeURIComponent(g.id)}`).then(upsert, () => {});
  };
  img.src = output.url;
}

// ---------------------------------------------------------------------------------------------
// The wall.

function insertCard(g) {
  let index = order.findIndex((id) => newerThan(g, generations.get(id)));
  if (index < 0) index = order.length;
  order.splice(index, 0, g.id);
  const li = h('li', { className: 'card' });
  const button = h('button', { type: 'button', className: 'card-open', 'aria-haspopup': 'dialog' });
  button.addEventListener('click', () => openDetail(g.id, button));
  li.append(button);
  const next = order[index + 1];
  const wall = $('wall');
  if (next && cards.get(next)) wall.insertBefore(li, cards.get(next).li);
  else wall.append(li);
  cards.set(g.id, { li, button });
  renderCard(g);
}

function renderCard(g) {
  const card = cards.get(g.id);
  if (!card) return;
  const { button } = card;
  button.dataset.status = g.status;
  button.setAttribute('aria-label', `${g.prompt} (${shortStatus(g)}). Open details`);
  const first = g.outputs[0];
  let media = button.querySelector('.card-media');
  if (!media) {
    media = h('span', { className: 'card-media' });
    button.append(
      media,
      h('span', { className: 'card-caption' }),
      h('span', { className: 'badge', 'aria-hidden': 'true' }),
    );
  }
  if (first) {
    let img = media.querySelector('img');
    if (!img) {
      media.replaceChildren();
      img = h('img', {
        alt: g.prompt,
        loading: 'lazy',
        decoding: 'async',
        width: first.width,
        height: first.height,
      });
      media.append(img);
      if (g.outputs.length > 1) media.append(h('span', { className: 'card-count' }, `×${g.outputs.length}`));
    }
    setImage(img, g, first);
  } else {
    const state = h('span', { className: 'card-state' }, statusText(g));
    if (g.status === 'running' || g.status === 'queued') {
      const bar = h('progress', { max: g.progress?.total ?? 1 });
      if (g.progress) bar.value = g.progress.step;
      bar.setAttribute('aria-hidden', 'true');
      state.append(bar);
    }
    media.replaceChildren(state);
  }
  button.querySelector('.card-caption').textContent = g.prompt;
  const badge = button.querySelector('.badge');
  badge.className = `badge badge-${g.status}`;
  badge.textContent = shortStatus(g);
}

function renderWallStatus() {
  const status = $('wall-status');
  const more = $('load-more');
  const end = $('wall-end');
  if (!apiKey) {
    status.textContent = 'Enter your API key above to see your generations.';
    more.hidden = true;
    end.textContent = '';
    return;
  }
  if (!wallLoaded) {
    status.textContent = loadingPage ? 'Loading your generations…' : '';
    more.hidden = true;
    end.textContent = '';
    return;
  }
  status.textContent = order.length === 0 ? 'No generations yet: write a prompt above.' : '';
  more.hidden = !hasMore;
  more.disabled = loadingPage;
  more.textContent = loadingPage ? 'Loading…' : 'Load older generations';
  end.textContent = !hasMore && order.length > 0 ? `That is all: ${order.length} generations.` : '';
}

async function loadMore() {
  if (loadingPage || !apiKey || (wallLoaded && !hasMore)) return;
  loadingPage = true;
  renderWallStatus();
  const mine = session;
  try {
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (nextCursor) query.set('cursor', nextCursor);
    const page = await api(`/v1/generations?${query}`, { signal: sessionAbort.signal });
    if (mine !== session) return;
    clearProblem($('wall-error'));
    nextCursor = page.next_cursor;
    hasMore = page.has_more;
    wallLoaded = true;
    for (const g of page.data) {
      upsert(g, { force: true });
      const later = pending.get(g.id);
      pending.delete(g.id);
      if (later) upsert(later);
    }
  } catch (error) {
    if (mine !== session || sessionAbort.signal.aborted) return;
    if (!(error instanceof ApiProblem && error.status === 401)) showProblem($('wall-error'), error);
  } finally {
    if (mine === session) {
      loadingPage = false;
      renderWallStatus();
      rearmSentinel();
    }
  }
}

// Infinite scroll: the "load older" area is the sentinel; the button is there for keyboards.
const sentinel = new IntersectionObserver(
  (entries) => {
    if (entries.some((entry) => entry.isIntersecting) && hasMore) loadMore();
  },
  { rootMargin: '400px 0px' },
);

/** Observing again reports the current intersection: a page that still fits loads the next. */
function rearmSentinel() {
  sentinel.unobserve($('wall-more'));
  if (hasMore) sentinel.observe($('wall-more'));
}

// ---------------------------------------------------------------------------------------------
// The live panel: the generation just submitted.

function showLive(id) {
  liveId = id;
  $('live').hidden = false;
  clearProblem($('live-error'));
  renderLive();
  watch(id);
}

function renderLive() {
  const g = generations.get(liveId);
  if (!g) return;
  $('live-prompt').textContent = g.prompt;
  $('live-status').textContent = statusText(g);
  const bar = $('live-progress');
  if (g.status === 'running' && g.progress) {
    bar.max = g.progress.total;
    bar.value = g.progress.step;
  } else if (FINAL.has(g.status)) {
    bar.max = 1;
    bar.value = g.status === 'succeeded' ? 1 : (g.progress?.step ?? 0) / (g.progress?.total ?? 1);
  } else {
    bar.removeAttribute('value');
  }
  const details = [];
  const eta = etaText(g);
  if (eta) details.push(eta);
  details.push(`${g.model ?? 'default model'}, ${g.width}×${g.height}, ${g.steps} steps`);
  if (g.status === 'succeeded' && g.timings.run_ms !== undefined)
    details.push(`ran ${formatMs(g.timings.run_ms)}`);
  if (g.translated && g.prompt_en) details.push(`in English: “${g.prompt_en}”`);
  $('live-detail').textContent = details.join(' · ');
  const cancel = $('live-cancel');
  const cancelable = !FINAL.has(g.status) && !g.cancel_requested;
  if (!cancelable && document.activeElement === cancel) $('live-open').focus();
  cancel.disabled = !cancelable;
  cancel.hidden = FINAL.has(g.status);
  announce(announcement(g));
}

async function cancelGeneration(id, box) {
  clearProblem(box);
  try {
    const g = await api(`/v1/generations/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
    upsert(g);
    announce(g.status === 'canceled' ? 'Canceled' : 'Cancel requested: it stops after the current step');
  } catch (error) {
    showProblem(box, error);
  }
}

// ---------------------------------------------------------------------------------------------
// The detail view.

function requestBodyOf(g) {
  const body = {};
  if (g.model) body.model = g.model;
  body.prompt = g.prompt;
  if (g.negative_prompt) body.negative_prompt = g.negative_prompt;
  Object.assign(body, {
    width: g.width,
    height: g.height,
    steps: g.steps,
    guidance_scale: g.guidance_scale,
    seed: g.seed,
    num_images: g.num_images,
  });
  if (g.requested_scheduler) body.scheduler = g.requested_scheduler;
  if (g.karras !== null && g.karras !== undefined) body.karras = g.karras;
  return body;
}

/** The request as curl, with the key left to the shell: `$EASEL_API_KEY`, never the key itself. */
function curlCommand(g) {
  const json = JSON.stringify(requestBodyOf(g), null, 2);
  const quoted = `'${json.replaceAll("'", "'\\''")}'`;
  return [
    `curl -s -X POST '${location.origin}/v1/generations' \\`,
    '  -H "Authorization: Bearer $EASEL_API_KEY" \\',
    "  -H 'Content-Type: application/json' \\",
    `  -d ${quoted}`,
  ].join('\n');
}

function openDetail(id, opener) {
  detailId = id;
  detailOpener = opener;
  $('detail-images').replaceChildren();
  $('detail-images').dataset.shas = '';
  $('detail-status').textContent = '';
  clearProblem($('detail-error'));
  renderDetail();
  const dialog = $('detail');
  if (!dialog.open) dialog.showModal();
  dialog.scrollTop = 0;
  $('detail-close').focus();
}

function row(term, value) {
  if (value === undefined || value === null || value === '') return [];
  return [h('dt', {}, term), h('dd', {}, value)];
}

function renderDetail() {
  const g = generations.get(detailId);
  if (!g) return;
  $('detail-title').textContent = `Generation: ${statusText(g)}`;
  const images = $('detail-images');
  // Images are rebuilt only when the outputs change, so a focused download link keeps its focus.
  const shas = g.outputs.map((o) => o.sha256).join();
  if (images.dataset.shas !== shas) {
    images.dataset.shas = shas;
    images.replaceChildren(
      ...g.outputs.map((output) => {
        const img = h('img', {
          alt: g.outputs.length > 1 ? `${g.prompt} (image ${output.index + 1})` : g.prompt,
          width: output.width,
          height: output.height,
        });
        const link = h(
          'a',
          {
            href: output.url,
            download: `easel-${g.id}-${output.index}.jpg`,
            target: '_blank',
            rel: 'noopener',
          },
          g.outputs.length > 1 ? `Download image ${output.index + 1}` : 'Download image',
        );
        const figure = h(
          'figure',
          {},
          img,
          h(
            'figcaption',
            {},
            link,
            ` ${output.width}×${output.height}, ${Math.round(output.bytes / 1024)} KB`,
          ),
        );
        setImage(img, g, output);
        return figure;
      }),
    );
  } else {
    g.outputs.forEach((output, i) => {
      const link = images.querySelectorAll('a')[i];
      if (link) link.href = output.url;
    });
  }
  const eta = etaText(g);
  $('detail-state').textContent = FINAL.has(g.status) ? '' : [statusText(g), eta].filter(Boolean).join(' · ');
  const timings = Object.entries(g.timings ?? {})
    .map(([name, ms]) => `${name.replace(/_ms$/, '').replaceAll('_', ' ')} ${formatMs(ms)}`)
    .join(', ');
  const sampler = g.scheduler ?? g.requested_scheduler ?? 'the model’s default';
  $('detail-body').replaceChildren(
    ...row('Prompt', g.prompt),
    ...(g.translated ? row('In English', g.prompt_en) : []),
    ...row('Negative prompt', g.negative_prompt),
    ...(g.translated && g.negative_prompt ? row('Negative, in English', g.negative_prompt_en) : []),
    ...row('Model', g.model ?? 'default'),
    ...row('Size', `${g.width}×${g.height}`),
    ...row('Steps', String(g.steps)),
    ...row('Guidance', String(g.guidance_scale)),
    ...row('Sampler', g.karras ? `${sampler} (Karras)` : sampler),
    ...row('Seed', String(g.seed)),
    ...row('Images', String(g.num_images)),
    ...row('Status', statusText(g)),
    ...(g.prompt_truncated
      ? row('Note', 'The prompt was longer than the model reads; its end was cut.')
      : []),
    ...row('Attempts', g.attempts > 1 ? String(g.attempts) : ''),
    ...row('Timings', timings),
    ...row('Created', new Date(g.created_at).toLocaleString()),
    ...row('Started', g.started_at && new Date(g.started_at).toLocaleString()),
    ...row('Finished', g.finished_at && new Date(g.finished_at).toLocaleString()),
    ...row('Id', g.id),
  );
  $('detail-curl-text').value = curlCommand(g);
  const cancel = $('detail-cancel');
  const cancelable = !FINAL.has(g.status) && !g.cancel_requested;
  if (!cancelable && document.activeElement === cancel) $('detail-close').focus();
  cancel.hidden = !cancelable;
}

async function copyCurl() {
  const text = $('detail-curl-text').value;
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    const area = $('detail-curl-text');
    area.focus();
    area.select();
    try {
      copied = document.execCommand('copy');
    } catch {
      copied = false;
    }
  }
  $('detail-status').textContent = copied
    ? 'Copied. Set EASEL_API_KEY in your shell, then paste.'
    : 'Copying is blocked here: select the command below and copy it.';
}

// ---------------------------------------------------------------------------------------------
// The form: the chosen model's parameters, within its limits.

function currentModel() {
  return models.find((m) => m.id === $('model').value);
}

function setNumber(id, { min, max, step }, value) {
  const input = $(id);
  input.min = String(min);
  input.max = String(max);
  input.step = String(step);
  input.value = String(value);
  $(`${id}-hint`).textContent = step > 1 ? `${min}–${max}, in steps of ${step}` : `${min}–${max}`;
}

function languagesText(languages) {
  const names = { en: 'English', ru: 'Russian' };
  return languages.map((code) => names[code] ?? code).join(', ');
}

/** Sets the form to `model`'s limits and defaults (or to `values`, for "run again"). */
function applyModel(model, values = {}) {
  const c = model.capabilities;
  setNumber(
    'width',
    { min: c.width.min, max: c.width.max, step: c.width.multiple_of },
    values.width ?? c.width.default,
  );
  setNumber(
    'height',
    { min: c.height.min, max: c.height.max, step: c.height.multiple_of },
    values.height ?? c.height.default,
  );
  setNumber('steps', { min: c.steps.min, max: c.steps.max, step: 1 }, values.steps ?? c.steps.default);
  setNumber(
    'guidance_scale',
    { min: c.guidance_scale.min, max: c.guidance_scale.max, step: 0.1 },
    values.guidance_scale ?? c.guidance_scale.default,
  );
  setNumber('num_images', { min: 1, max: c.max_images, step: 1 }, values.num_images ?? 1);
  $('seed').value = values.seed === undefined ? '' : String(values.seed);

  const sampler = $('scheduler');
  sampler.replaceChildren(
    h('option', { value: '' }, `Default (${SAMPLER_NAMES[c.default_sampler] ?? c.default_sampler})`),
    ...c.samplers.map((name) => h('option', { value: name }, SAMPLER_NAMES[name] ?? name)),
  );
  sampler.value = values.scheduler && c.samplers.includes(values.scheduler) ? values.scheduler : '';
  sampler.disabled = c.samplers.length === 0;
  $('karras').checked = Boolean(values.karras);
  updateKarras();

  const negative = c.negative_prompt;
  $('negative-field').hidden = !negative;
  $('negative_prompt').disabled = !negative;
  if (values.negative_prompt !== undefined) $('negative_prompt').value = values.negative_prompt;

  const notes = [`Reads ${languagesText(c.languages)} natively; other languages are translated to English.`];
  if (model.status === 'no_workers')
    notes.push('No worker holds it now: a generation waits until one starts.');
  if (model.median_run_ms !== null) notes.push(`Recent runs took about ${formatMs(model.median_run_ms)}.`);
  if (!negative) notes.push('It takes no negative prompt.');
  $('model-hint').textContent = notes.join(' ');
}

function updateKarras() {
  const model = currentModel();
  const box = $('karras');
  const sampler = $('scheduler').value;
  const allowed = Boolean(model && sampler && model.capabilities.karras_samplers.includes(sampler));
  box.disabled = !allowed;
  if (!allowed) box.checked = false;
  $('karras-hint').textContent = allowed
    ? ''
    : model?.capabilities.karras_samplers.length
      ? `With ${model.capabilities.karras_samplers.map((s) => SAMPLER_NAMES[s] ?? s).join(', ')}.`
      : 'Not offered by this model.';
}

async function loadModels() {
  const mine = session;
  try {
    const list = await api('/v1/models', { signal: sessionAbort.signal });
    if (mine !== session) return;
    models = list.data;
    const select = $('model');
    select.replaceChildren(
      ...models.map((m) =>
        h('option', { value: m.id }, m.status === 'available' ? m.id : `${m.id} (no worker running now)`),
      ),
    );
    if (models.length === 0) {
      showProblem($('create-error'), new Error('no models are registered on this service yet.'));
      return;
    }
    const remembered = storedModel();
    const preferred =
      models.find((m) => m.id === remembered) ?? models.find((m) => m.status === 'available') ?? models[0];
    select.value = preferred.id;
    applyModel(preferred);
    $('create-fields').disabled = false;
    clearProblem($('create-error'));
    $('key-status').textContent = `Using the key ending in …${apiKey.slice(-4)}. It stays in this browser.`;
    showKeyEntry(false);
  } catch (error) {
    if (mine !== session || sessionAbort.signal.aborted) return;
    if (!(error instanceof ApiProblem && error.status === 401)) showProblem($('create-error'), error);
  }
}

function formValues() {
  const model = currentModel();
  const number = (id) => $(id).valueAsNumber;
  const body = {
    model: model.id,
    prompt: $('prompt').value,
    width: number('width'),
    height: number('height'),
    steps: number('steps'),
    guidance_scale: number('guidance_scale'),
    num_images: number('num_images'),
  };
  if ($('seed').value !== '') body.seed = number('seed');
  if ($('scheduler').value) body.scheduler = $('scheduler').value;
  if (!$('karras').disabled && $('karras').checked) body.karras = true;
  const negative = $('negative_prompt').value;
  if (model.capabilities.negative_prompt && negative.trim() !== '') body.negative_prompt = negative;
  return body;
}

function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

async function submit(body) {
  const button = $('submit');
  const box = $('create-error');
  clearProblem(box);
  clearFieldErrors();
  button.disabled = true;
  button.textContent = 'Sending…';
  try {
    // A fresh Idempotency-Key per press: a retried request never makes a second generation.
    const g = await api('/v1/generations', {
      method: 'POST',
      body,
      headers: { 'Idempotency-Key': newIdempotencyKey() },
    });
    upsert(g, { force: true });
    showLive(g.id);
    return true;
  } catch (error) {
    showProblem(box, error, { markFields: true });
    box.focus();
    return false;
  } finally {
    button.disabled = false;
    button.textContent = 'Generate';
  }
}

function runAgain() {
  const g = generations.get(detailId);
  if (!g) return;
  const model = models.find((m) => m.id === g.model) ?? currentModel();
  if (!model) return;
  $('model').value = model.id;
  applyModel(model, {
    width: g.width,
    height: g.height,
    steps: g.steps,
    guidance_scale: g.guidance_scale,
    num_images: g.num_images,
    seed: g.seed,
    scheduler: g.requested_scheduler ?? undefined,
    karras: g.karras ?? false,
    negative_prompt: g.negative_prompt,
  });
  $('prompt').value = g.prompt;
  $('detail').close();
  submit(formValues());
}

// ---------------------------------------------------------------------------------------------
// Sessions: one per key.

/** The key's input: open when there is no key (or it was refused), else behind "Change key". */
function showKeyEntry(open) {
  $('key-form').hidden = !open;
  $('key-change').setAttribute('aria-expanded', String(open));
  $('key-change').hidden = !apiKey || open;
  $('key-actions').hidden = !apiKey;
}

function keyRefused(problem) {
  $('key-status').textContent =
    `The key was refused: ${problemSummary(problem).replace(/ Check the API key above\.$/, '')}`;
  $('create-fields').disabled = true;
  showKeyEntry(true);
  if (!wallLoaded) $('wall-status').textContent = 'Your generations show here once the key is accepted.';
}

function startSession() {
  session++;
  sessionAbort.abort();
  sessionAbort = new AbortController();
  for (const controller of watchers.values()) controller.abort();
  watchers.clear();
  polled.clear();
  generations.clear();
  pending.clear();
  cards.clear();
  order.length = 0;
  nextCursor = null;
  hasMore = false;
  wallLoaded = false;
  loadingPage = false;
  feedState = 'connecting';
  liveId = undefined;
  $('live').hidden = true;
  $('wall').replaceChildren();
  for (const box of ['create-error', 'wall-error', 'live-error']) clearProblem($(box));
  $('create-fields').disabled = true;
  showKeyEntry(!apiKey);
  if ($('detail').open) $('detail').close();
  if (!apiKey) {
    $('key-status').textContent = '';
    renderWallStatus();
    return;
  }
  $('key-status').textContent = 'Checking the key…';
  loadModels();
  const mine = session;
  let firstPage = false;
  const loadFirstPage = () => {
    if (firstPage || mine !== session) return;
    firstPage = true;
    loadMore();
  };
  runFeed(sessionAbort.signal, loadFirstPage);
  // A stream slow to open does not hold the wall back for long.
  setTimeout(loadFirstPage, FEED_WAIT_MS);
}

// ---------------------------------------------------------------------------------------------
// Wiring.

$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const value = $('key-input').value.trim();
  if (!value) {
    $('key-status').textContent = 'Paste your API key first.';
    $('key-input').focus();
    return;
  }
  apiKey = value;
  storeKey(value);
  $('key-input').value = '';
  $('key-input').placeholder = 'Paste another key to switch';
  startSession();
});

$('key-change').addEventListener('click', () => {
  const open = $('key-form').hidden;
  showKeyEntry(open);
  if (open) $('key-input').focus();
});

$('key-forget').addEventListener('click', () => {
  apiKey = '';
  storeKey('');
  $('key-input').placeholder = 'esl_…';
  startSession();
  $('key-status').textContent = 'The key was removed from this browser.';
  $('key-input').focus();
});

$('model').addEventListener('change', () => {
  const model = currentModel();
  if (!model) return;
  try {
    localStorage.setItem(MODEL_STORAGE, model.id);
  } catch {
    // Not remembered: fine.
  }
  applyModel(model);
});

$('scheduler').addEventListener('change', updateKarras);

for (const id of FIELD_IDS) {
  $(id).addEventListener('input', () => {
    $(id).removeAttribute('aria-invalid');
    $(`${id}-error`).textContent = '';
  });
}

$('create-form').addEventListener('submit', (event) => {
  event.preventDefault();
  if (!currentModel()) return;
  submit(formValues());
});

$('live-cancel').addEventListener('click', () => {
  if (liveId) cancelGeneration(liveId, $('live-error'));
});
$('live-open').addEventListener('click', () => {
  if (liveId) openDetail(liveId, $('live-open'));
});

$('detail-close').addEventListener('click', () => $('detail').close());
$('detail').addEventListener('close', () => {
  detailId = undefined;
  if (detailOpener?.isConnected) detailOpener.focus();
  detailOpener = undefined;
});
// A click on the backdrop (outside the dialog's box) closes it too.
$('detail').addEventListener('click', (event) => {
  if (event.target === $('detail')) {
    const box = $('detail').getBoundingClientRect();
    const inside =
      event.clientX >= box.left &&
      event.clientX <= box.right &&
      event.clientY >= box.top &&
      event.clientY <= box.bottom;
    if (!inside) $('detail').close();
  }
});
$('detail-curl').addEventListener('click', copyCurl);
$('detail-again').addEventListener('click', runAgain);
$('detail-cancel').addEventListener('click', () => {
  if (detailId) cancelGeneration(detailId, $('detail-error'));
});
$('load-more').addEventListener('click', loadMore);

// ETAs count down between events.
setInterval(() => {
  const live = generations.get(liveId);
  if (live && !FINAL.has(live.status)) renderLive();
  const shown = generations.get(detailId);
  if (shown && !FINAL.has(shown.status)) renderDetail();
}, 1000);

if (apiKey) $('key-input').placeholder = 'Paste another key to switch';
startSession();
