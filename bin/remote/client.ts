// The CLI's HTTP client for a running Easel server: bearer auth, problem+json errors as one
// line (`code: detail`), and retries of what is safe to retry (GETs, and creates that carry an
// Idempotency-Key, which the server answers with the same generation however often it is sent).

import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { UsageResource } from '../../api/usage.schemas.ts';
import type { GenerationOutputResource, GenerationResource } from '../../shared/generation.schemas.ts';
import { CliError, describeError } from '../commands/cli.ts';

/** An output as the resource lists it (its presigned `url`, size and hash). */
export type GenerationOutput = GenerationOutputResource;

/**
 * The Generation resource as the CLI reads it: the fields it needs, with the newer ones (progress,
 * eta, cancel_requested, …) optional so that an older server still works.
 */
export type Generation = Pick<
  GenerationResource,
  'id' | 'status' | 'width' | 'height' | 'steps' | 'seed' | 'outputs'
> &
  Partial<
    Pick<
      GenerationResource,
      | 'scheduler'
      | 'queue_position'
      | 'progress'
      | 'eta'
      | 'cancel_requested'
      | 'error'
      | 'started_at'
      | 'finished_at'
    >
  >;

export const TERMINAL = new Set(['succeeded', 'failed', 'canceled']);

export interface ClientOptions {
  baseUrl: string;
  apiKey: string;
  signal?: AbortSignal;
}

interface Problem {
  code: string;
  detail?: string;
  errors?: { field: string; message: string }[];
}

/** A problem+json answer, as the one line the CLI prints: `code: detail (field: message; …)`. */
export class ApiProblem extends CliError {
  override name = 'ApiProblem';
  readonly status: number;
  readonly code: string;

  constructor(status: number, problem: Problem) {
    const fields = problem.errors?.length
      ? ` (${problem.errors.map((e) => `${e.field}: ${e.message}`).join('; ')})`
      : '';
    super(`${problem.code}: ${problem.detail ?? `HTTP ${status}`}${fields}`);
    this.status = status;
    this.code = problem.code;
  }
}

const RETRY_STATUSES = new Set([502, 503, 504]);
const MAX_RETRY_DELAY_MS = 5_000;

function isProblem(value: unknown): value is Problem {
  return typeof value === 'object' && value !== null && typeof (value as Problem).code === 'string';
}

async function failure(response: Response, what: string): Promise<CliError> {
  const text = await response.text().catch(() => '');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (isProblem(body)) return new ApiProblem(response.status, body);
  return new CliError(`${what}: HTTP ${response.status} ${response.statusText}`.trim());
}

/** fetch's TypeError over a socket-level cause (ECONNREFUSED, ECONNRESET, UND_ERR_SOCKET, …), not a bad URL. */
function isNetworkError(error: unknown): boolean {
  const cause = (error as { cause?: { code?: unknown } }).cause;
  return error instanceof TypeError && typeof cause?.code === 'string';
}

function retryDelayMs(response: Response | undefined, attempt: number): number {
  const header = Number(response?.headers.get('retry-after'));
  const ms = Number.isFinite(header) && header > 0 ? header * 1000 : 500 * 2 ** attempt;
  return Math.min(ms, MAX_RETRY_DELAY_MS);
}

export function createClient(options: ClientOptions) {
  const base = options.baseUrl.replace(/\/+$/, '');

  /**
   * One request, retried on network errors and 502/503/504 (but not a full queue, which drains
   * slowly: that is reported). Only for requests that are safe to repeat.
   */
  async function send(
    method: 'GET' | 'POST',
    path: string,
    init: { body?: unknown; headers?: Record<string, string>; attempts: number },
  ): Promise<Response> {
    const url = `${base}${path}`;
    const headers: Record<string, string> = {
      Authorization: `Bearer ${options.apiKey}`,
      Accept: 'application/json, application/problem+json',
      'User-Agent': 'easel-cli',
      ...init.headers,
    };
    if (init.body !== undefined) headers['Content-Type'] = 'application/json';
    for (let attempt = 0; ; attempt++) {
      const last = attempt + 1 >= init.attempts;
      let response: Response | undefined;
      try {
        response = await fetch(url, {
          method,
          headers,
          body: init.body === undefined ? undefined : JSON.stringify(init.body),
          signal: options.signal,
        });
      } catch (error) {
        if (options.signal?.aborted) throw error;
        if (last || !isNetworkError(error))
          throw new CliError(`cannot reach ${base}: ${describeError(error)}`);
      }
      if (response) {
        if (response.ok) return response;
        const retryable = RETRY_STATUSES.has(response.status) && !last;
        if (!retryable) throw await failure(response, `${method} ${url}`);
        const problem = await failure(response.clone(), `${method} ${url}`);
        if (problem instanceof ApiProblem && problem.code === 'queue_full') throw problem;
        await response.body?.cancel();
      }
      await delay(retryDelayMs(response, attempt), undefined, { signal: options.signal });
    }
  }

  async function generation(response: Response, what: string): Promise<Generation> {
    const body = (await response.json().catch(() => undefined)) as Generation | undefined;
    if (
      !body ||
      typeof body.id !== 'string' ||
      typeof body.status !== 'string' ||
      !Array.isArray(body.outputs)
    ) {
      throw new CliError(`${what}: the answer is not a generation; is ${base} an Easel server?`);
    }
    return body;
  }

  return {
    baseUrl: base,

    async createGeneration(body: Record<string, unknown>, idempotencyKey: string): Promise<Generation> {
      const response = await send('POST', '/v1/generations', {
        body,
        headers: { 'Idempotency-Key': idempotencyKey },
        attempts: 4,
      });
      return generation(response, 'POST /v1/generations');
    },

    /**
     * `waitSeconds`: asks the server to hold the answer until the generation has finished
     * (`Prefer: wait`); `waited` says whether it did (`Preference-Applied`), so the caller knows
     * whether to pause before asking again.
     */
    async getGeneration(
      id: string,
      waitSeconds?: number,
    ): Promise<{ generation: Generation; waited: boolean }> {
      const path = `/v1/generations/${encodeURIComponent(id)}`;
      const response = await send('GET', path, {
        headers: waitSeconds ? { Prefer: `wait=${waitSeconds}` } : {},
        // A server restarting (or a load balancer swapping replicas) during a long wait is not fatal.
        attempts: 8,
      });
      const waited = /\bwait=/.test(response.headers.get('preference-applied') ?? '');
      return { generation: await generation(response, `GET ${path}`), waited };
    },

    /**
     * The generation's server-sent events (GET /v1/generations/{id}/events): each event's
     * generation, in order, until the stream ends (after the final event, or when the connection
     * drops; `lastEventId` resumes after a drop). Undefined when the server has no event streams
     * (an older Easel) or refuses one now (429: the key's streams are all in use), so the caller
     * polls instead.
     */
    async streamGeneration(
      id: string,
      signal: AbortSignal,
      lastEventId?: string,
    ): Promise<AsyncGenerator<{ id: string | undefined; generation: Generation }> | undefined> {
      let response: Response;
      try {
        response = await fetch(`${base}/v1/generations/${encodeURIComponent(id)}/events`, {
          headers: {
            Authorization: `Bearer ${options.apiKey}`,
            Accept: 'text/event-stream',
            'User-Agent': 'easel-cli',
            ...(lastEventId ? { 'Last-Event-ID': lastEventId } : {}),
          },
          signal,
        });
      } catch (error) {
        if (signal.aborted) throw error;
        return undefined;
      }
      const type = response.headers.get('content-type') ?? '';
      if (!response.ok || !type.startsWith('text/event-stream') || !response.body) {
        await response.body?.cancel();
        return undefined;
      }
      return readEvents(response.body);
    },

    /** GET /v1/usage with these query parameters (`easel usage`): the usage summary as sent. */
    async getUsage(query: URLSearchParams): Promise<UsageResource> {
      const path = `/v1/usage${query.size ? `?${query}` : ''}`;
      const response = await send('GET', path, { attempts: 4 });
      const body = (await response.json().catch(() => undefined)) as UsageResource | undefined;
      if (body?.object !== 'usage' || !Array.isArray(body.data)) {
        throw new CliError(`GET ${path}: the answer is not a usage summary; is ${base} an Easel server?`);
      }
      return body;
    },

    /** The bytes of one output, fetched from its presigned URL and checked against its size and hash. */
    async download(output: GenerationOutput): Promise<Buffer> {
      let response: Response;
      try {
        response = await fetch(output.url, { signal: options.signal });
      } catch (error) {
        if (options.signal?.aborted) throw error;
        throw new CliError(`cannot download image ${output.index}: ${describeError(error)}`);
      }
      if (!response.ok) {
        throw new CliError(
          `cannot download image ${output.index}: HTTP ${response.status} from the object store` +
            (response.status === 403 ? ' (the presigned URL may have expired)' : ''),
        );
      }
      const bytes = Buffer.from(await response.arrayBuffer());
      if (
        bytes.length !== output.bytes ||
        createHash('sha256').update(bytes).digest('hex') !== output.sha256
      ) {
        throw new CliError(
          `image ${output.index} arrived damaged: ${bytes.length} bytes, not the ${output.bytes} bytes with the sha256 the server reported`,
        );
      }
      return bytes;
    },
  };
}

export type EaselClient = ReturnType<typeof createClient>;

/**
 * The events of a text/event-stream body (the subset Easel sends: `id:`, `event:`, one `data:`
 * JSON line per event, `:` comments); a broken connection just ends the sequence.
 */
async function* readEvents(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<{ id: string | undefined; generation: Generation }> {
  const decoder = new TextDecoder();
  let buffer = '';
  let id: string | undefined;
  let data = '';
  try {
    for await (const chunk of body) {
      buffer += decoder.decode(chunk, { stream: true });
      for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
        const line = buffer.slice(0, end).replace(/\r$/, '');
        buffer = buffer.slice(end + 1);
        if (line === '') {
          if (data) {
            const parsed = JSON.parse(data) as { generation?: Generation };
            if (parsed.generation) yield { id, generation: parsed.generation };
          }
          data = '';
        } else if (line.startsWith('id:')) id = line.slice(3).trim();
        else if (line.startsWith('data:')) data += line.slice(5).trim();
      }
    }
  } catch {
    // The connection dropped: the caller resumes or falls back to polling.
  }
}
