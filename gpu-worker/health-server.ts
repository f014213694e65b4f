// /healthz (process alive) and /readyz (models loaded and warmed, database reachable) for the
// worker, so an orchestrator routes nothing to, and restarts, a worker that cannot serve.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface WorkerStatus {
  ready: boolean;
  details(): Promise<Record<string, unknown> & { ok: boolean }>;
}

export async function startHealthServer(status: WorkerStatus, port: number, host: string): Promise<Server> {
  const server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (path !== '/healthz' && path !== '/readyz')) {
      res.writeHead(404, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify({ title: 'Not Found', status: 404, code: 'not_found' }));
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok' }));
      return;
    }
    const details = status.ready ? await status.details() : { ok: false, reason: 'models loading' };
    const ok = status.ready && details.ok;
    res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: ok ? 'ready' : 'not_ready', ...details }));
  });
  server.listen(port, host);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return server;
}

export function serverUrl(server: Server, host: string): string {
  return `http://${host}:${(server.address() as AddressInfo).port}`;
}
