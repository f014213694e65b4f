// One webhook attempt over HTTP: no redirects followed, a timeout on the whole exchange, at most
// 4 KiB of the response read, and the SSRF guard on every address before any connection.
import http from 'node:http';
import https from 'node:https';
import pkg from '../package.json' with { type: 'json' };
import { checkWebhookUrl, guardedLookup, WebhookTargetForbidden, type WebhookTargetPolicy } from './ssrf.ts';

export const RESPONSE_BODY_LIMIT = 4096;
const MAX_RETRY_AFTER_SECONDS = 86_400;

export type AttemptKind =
  /** 2xx */
  | 'delivered'
  /** network error, timeout, 408, 429, 5xx (the sender's outcome is `exhausted` when no attempt is left) */
  | 'retry'
  /** 410 Gone: the receiver retired the URL */
  | 'gone'
  /** another status (3xx, 4xx): the receiver refused it for good */
  | 'rejected'
  /** the SSRF guard refused the target: nothing was sent */
  | 'forbidden';

export interface AttemptResult {
  kind: AttemptKind;
  statusCode: number | null;
  latencyMs: number;
  error: string | null;
  body: string | null;
  /** From a Retry-After header on 429/503, in seconds. */
  retryAfterSeconds?: number;
}

export interface PostOptions {
  url: string;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
  policy: WebhookTargetPolicy;
}

function classify(status: number): AttemptKind {
  if (status >= 200 && status < 300) return 'delivered';
  if (status === 410) return 'gone';
  if (status === 408 || status === 429 || status >= 500) return 'retry';
  return 'rejected';
}

export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  const seconds = /^\d+$/.test(trimmed) ? Number(trimmed) : (Date.parse(trimmed) - now) / 1000;
  if (!Number.isFinite(seconds)) return undefined;
  return Math.min(Math.max(0, seconds), MAX_RETRY_AFTER_SECONDS);
}

function isForbidden(error: unknown, depth = 0): boolean {
  if (!(error instanceof Error) || depth > 4) return false;
  if (error instanceof WebhookTargetForbidden) return true;
  if ((error as { code?: unknown }).code === 'ERR_WEBHOOK_TARGET_FORBIDDEN') return true;
  if (error instanceof AggregateError && error.errors.some((e) => isForbidden(e, depth + 1))) return true;
  return isForbidden(error.cause, depth + 1);
}

export function postWebhook(options: PostOptions): Promise<AttemptResult> {
  const started = performance.now();
  const elapsed = () => performance.now() - started;
  const check = checkWebhookUrl(options.url, options.policy);
  if (!check.ok) {
    return Promise.resolve({
      kind: 'forbidden',
      statusCode: null,
      latencyMs: elapsed(),
      error: `webhook URL ${check.reason}`,
      body: null,
    });
  }
  const { url } = check;
  const client = url.protocol === 'https:' ? https : http;
  const signal = AbortSignal.timeout(options.timeoutMs);

  return new Promise<AttemptResult>((resolve) => {
    let settled = false;
    const settle = (result: AttemptResult) => {
      if (settled) return;
      settled = true;
      resolve(result);
    };
    const failed = (error: unknown) => {
      if (isForbidden(error)) {
        const message = error instanceof Error ? error.message : String(error);
        return settle({
          kind: 'forbidden',
          statusCode: null,
          latencyMs: elapsed(),
          error: message,
          body: null,
        });
      }
      const message = signal.aborted
        ? `timed out after ${options.timeoutMs / 1000} s`
        : error instanceof Error
          ? `${(error as { code?: string }).code ?? error.name}: ${error.message}`
          : String(error);
      settle({ kind: 'retry', statusCode: null, latencyMs: elapsed(), error: message, body: null });
    };
    const request = client.request(
      url,
      {
        method: 'POST',
        // A fresh connection per attempt: the guard runs on every connect, and nothing pools.
        agent: false,
        lookup: guardedLookup(options.policy),
        signal,
        headers: {
          ...options.headers,
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(options.body)),
          'user-agent': `Easel-Webhooks/${pkg.version}`,
        },
      },
      (response) => {
        const status = response.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let size = 0;
        const done = () => {
          const kind = classify(status);
          settle({
            kind,
            statusCode: status,
            latencyMs: elapsed(),
            error: kind === 'delivered' ? null : `HTTP ${status}`,
            body: Buffer.concat(chunks).subarray(0, RESPONSE_BODY_LIMIT).toString('utf8'),
            retryAfterSeconds:
              status === 429 || status === 503 ? parseRetryAfter(response.headers['retry-after']) : undefined,
          });
          response.destroy();
        };
        response.on('data', (chunk: Buffer) => {
          if (size < RESPONSE_BODY_LIMIT) chunks.push(chunk);
          size += chunk.length;
          if (size >= RESPONSE_BODY_LIMIT) done();
        });
        response.on('end', done);
        // The status line arrived: a body cut short (timeout, reset) does not change the outcome.
        response.on('error', done);
        response.on('close', done);
      },
    );
    request.on('error', failed);
    request.end(options.body);
  });
}
