// Which methods a path answers, read from the app's own route table, so a known path asked with
// another method is 405 with `Allow` rather than 404, and the list cannot drift from the routes.
import type { Hono } from 'hono';
import type { AppEnv } from './context.ts';

// The order `Allow` lists them in.
const METHOD_ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

/** A Hono route path (`/v1/generations/:id`, `/docs/*`) as an anchored regular expression. */
function routePattern(path: string): RegExp {
  const source = path
    .split('/')
    .map((segment) => {
      if (segment === '*') return '.*';
      if (segment.startsWith(':')) {
        // `:name{regex}` carries its own pattern; a plain `:name` is one non-empty segment.
        const custom = /^:[^{]+\{(.+)\}$/.exec(segment)?.[1];
        return custom ? `(?:${custom})` : '[^/]+';
      }
      return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return new RegExp(`^${source}$`);
}

/**
 * The methods `path` has routes for (HEAD wherever GET is: Hono answers it from the GET route),
 * in a fixed order; [] for a path no route serves. Middleware (`app.use`, method ALL) is not a
 * route. The table is read on first use, once every route is registered.
 */
export function allowedMethods(app: Hono<AppEnv>): (path: string) => string[] {
  let table: Array<{ pattern: RegExp; method: string }> | undefined;
  return (path) => {
    table ??= app.routes
      .filter((route) => route.method !== 'ALL')
      .map((route) => ({ pattern: routePattern(route.path), method: route.method.toUpperCase() }));
    const methods = new Set(table.filter((route) => route.pattern.test(path)).map((route) => route.method));
    if (methods.has('GET')) methods.add('HEAD');
    return [...methods].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  };
}

function rank(method: string): number {
  const index = METHOD_ORDER.indexOf(method);
  return index === -1 ? METHOD_ORDER.length : index;
}
