// A small HTTP listener for processes that serve no HTTP API of their own (the webhook sender,
// the GPU worker): Prometheus `/metrics` from a prom-client Registry, `/healthz` (the process
// answers) and, given a readiness callback, `/readyz`. Bind it to a private address: it has no auth.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { withDeadline } from './deadline.ts';
import { answerClientErrors } from './http-client-errors.ts';

/** `ok` decides 200 or 503; the other members are rendered into the answer (e.g. per-check results). */
export type Readiness = { ok: boolean } & Record<string, unknown>;

export interface MetricsServerOptions {
  registry: Registry;
  port: number;
  host: string;
  /** Answers /readyz; without it /readyz is 404. */
  readiness?: () => Readiness | Promise<Readiness>;
  /** A readiness callback slower than this counts as not ready (default 2000 ms). */
  readinessTimeoutMs?: number;
}

function send(res: ServerResponse, status: number, contentType: string, body: string, headers = {}) {
  res.writeHead(status, { 'content-type': contentType, 'cache-control': 'no-store', ...headers });
  res.end(body);
}

function problem(res: ServerResponse, status: number, code: string, title: string, headers = {}) {
  send(res, status, 'application/problem+json', JSON.stringify({ title, status, code }), headers);
}

async function readiness(options: MetricsServerOptions): Promise<Readiness> {
  if (!options.readiness) return { ok: true };
  try {
    return await withDeadline(
      Promise.resolve(options.readiness()),
      options.readinessTimeoutMs ?? 2000,
      'readiness check',
    );
  } catch (error) {
    return { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
}

async function route(options: MetricsServerOptions, req: IncomingMessage, res: ServerResponse) {
  const path = (req.url ?? '/').split('?')[0];
  const known = path === '/metrics' || path === '/healthz' || (path === '/readyz' && options.readiness);
  if (!known) return problem(res, 404, 'not_found', 'Not Found');
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return problem(res, 405, 'method_not_allowed', 'Method Not Allowed', { allow: 'GET, HEAD' });
  }
  if (path === '/metrics') {
    return send(res, 200, options.registry.contentType, await options.registry.metrics());
  }
  if (path === '/healthz') return send(res, 200, 'application/json', JSON.stringify({ status: 'ok' }));
  const { ok, ...details } = await readiness(options);
  send(
    res,
    ok ? 200 : 503,
    'application/json',
    JSON.stringify({ status: ok ? 'ready' : 'not_ready', ...details }),
  );
}

/** Resolves once listening (port 0 picks a free port: see `metricsServerUrl`). */
export async function startMetricsServer(options: MetricsServerOptions): Promise<Server> {
  const server = createServer((req, res) => {
    route(options, req, res).catch(() => {
      if (!res.headersSent) problem(res, 500, 'internal_error', 'Internal Server Error');
      else res.destroy();
    });
  });
  answerClientErrors(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}

export function metricsServerUrl(server: Server): string {
  const { address, family, port } = server.address() as AddressInfo;
  return `http://${family === 'IPv6' ? `[${address}]` : address}:${port}`;
}

export function closeMetricsServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeAllConnections();
  });
}
