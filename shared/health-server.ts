// A small HTTP listener for processes that serve no HTTP API of their own (the webhook sender,
// the GPU worker): Prometheus `/metrics` from a prom-client Registry, `/healthz` (the process
// answers) and, given a readiness callback, `/readyz` in the shape every process answers it
// (shared/readiness.ts). Bind it to a private address: it has no auth. Both processes configure
// it with the same two variables (healthListenerEnv).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import { withDeadline } from './deadline.ts';
import { envInt } from './env.ts';
import { answerClientErrors } from './http-client-errors.ts';
import { type ReadinessChecks, readinessAnswer } from './readiness.ts';

/** The listener's settings, the same names in every process that has one. */
export const healthListenerEnv = {
  HEALTH_PORT: envInt(0, 65_535)
    .optional()
    .describe('Port of the `/healthz`, `/readyz` and `/metrics` listener, without auth; unset: no listener'),
  HEALTH_HOST: z.string().min(1).default('127.0.0.1').describe('Bind address of that listener'),
};

/** What a process reports: its checks (each `ok` or why not), and members of its own to show. */
export interface ReadinessReport {
  checks: ReadinessChecks;
  details?: Record<string, unknown>;
}

export interface HealthServerOptions {
  registry: Registry;
  port: number;
  host: string;
  /** Answers /readyz; without it /readyz is 404. */
  readiness?: () => ReadinessReport | Promise<ReadinessReport>;
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

async function readiness(options: HealthServerOptions): Promise<ReadinessReport> {
  if (!options.readiness) return { checks: {} };
  try {
    return await withDeadline(
      Promise.resolve(options.readiness()),
      options.readinessTimeoutMs ?? 2000,
      'readiness check',
    );
  } catch (error) {
    // The callback itself failed or hung: one failed check says so.
    return { checks: { readiness: error instanceof Error ? error.message : String(error) } };
  }
}

async function route(options: HealthServerOptions, req: IncomingMessage, res: ServerResponse) {
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
  const { checks, details } = await readiness(options);
  const answer = readinessAnswer(checks, details);
  const contentType = answer.status === 200 ? 'application/json' : 'application/problem+json';
  send(res, answer.status, contentType, JSON.stringify(answer.body));
}

/** Resolves once listening (port 0 picks a free port: see `healthServerUrl`). */
export async function startHealthServer(options: HealthServerOptions): Promise<Server> {
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

export function healthServerUrl(server: Server): string {
  const { address, family, port } = server.address() as AddressInfo;
  return `http://${family === 'IPv6' ? `[${address}]` : address}:${port}`;
}

export function closeHealthServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeAllConnections();
  });
}
