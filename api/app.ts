// The HTTP app as a factory over its dependencies: importing this module does no I/O.
import { OpenAPIHono } from '@hono/zod-openapi';
import { bodyLimit } from 'hono/body-limit';
import { requestId } from 'hono/request-id';
import type { PgBoss } from 'pg-boss';
import type { Logger } from 'pino';
import type { Db } from '../db/connect.ts';
import pkg from '../package.json' with { type: 'json' };
import type { ObjectStore } from '../shared/object-store.ts';
import { allowedMethods } from './allowed-methods.ts';
import { bearerAuth } from './auth.ts';
import type { ApiConfig } from './config.ts';
import type { AppEnv } from './context.ts';
import { registerDocsRoutes } from './docs.routes.ts';
import { apiError, createErrorHandler, createNotFoundHandler } from './errors.ts';
import type { EventHub } from './event-hub.ts';
import { streamEventsHandler, streamGenerationEventsHandler } from './events.handlers.ts';
import { streamEventsRoute, streamGenerationEventsRoute } from './events.routes.ts';
import {
  cancelGenerationHandler,
  createGenerationHandler,
  getGenerationHandler,
  getGenerationImageHandler,
  listGenerationsHandler,
} from './generations.handlers.ts';
import {
  cancelGenerationRoute,
  createGenerationRoute,
  getGenerationImageRoute,
  getGenerationRoute,
  listGenerationsRoute,
} from './generations.routes.ts';
import { registerHealthRoutes } from './health.routes.ts';
import { createApiMetrics } from './metrics.ts';
import { requestLogging } from './middleware.ts';
import { createModelCatalog, type ModelCatalog } from './model-catalog.ts';
import { getModelHandler, listModelsHandler } from './models.handlers.ts';
import { getModelRoute, listModelsRoute } from './models.routes.ts';
import type { StatusListener } from './status-listener.ts';
import { getUsageHandler } from './usage.handlers.ts';
import { getUsageRoute } from './usage.routes.ts';
import { validationHook } from './validation.ts';
import { registerWallRoutes } from './wall.routes.ts';
import {
  enableWebhookUrlHandler,
  getWebhookSecretHandler,
  listDisabledWebhookUrlsHandler,
  listWebhookDeliveriesHandler,
  redeliverWebhookHandler,
} from './webhooks.handlers.ts';
import { registerWebhookEvents } from './webhooks.openapi.ts';
import {
  enableWebhookUrlRoute,
  getWebhookSecretRoute,
  listDisabledWebhookUrlsRoute,
  listWebhookDeliveriesRoute,
  redeliverWebhookRoute,
} from './webhooks.routes.ts';
import { listWorkersHandler } from './workers.handlers.ts';
import { listWorkersRoute } from './workers.routes.ts';

export interface AppDeps {
  db: Db;
  /** Producer only: used to enqueue inside the create transaction. */
  boss: PgBoss;
  /** Presigns output URLs (so it must point at the endpoint clients reach) and answers readiness pings. */
  store: ObjectStore;
  config: ApiConfig;
  logger: Logger;
  /** The process's LISTEN connection for `Prefer: wait`; without it the preference is ignored. */
  statusListener?: StatusListener;
  /** The models requests may name; default: read from the models table per MODEL_CACHE_SECONDS. */
  models?: ModelCatalog;
  /** Feeds the event streams (GET /v1/events, …/events); without it they answer 503. */
  eventHub?: EventHub;
}

export type App = OpenAPIHono<AppEnv>;

const DOCUMENT_CONFIG = {
  openapi: '3.1.0',
  info: {
    title: 'Easel',
    version: pkg.version,
    description:
      'Self-hosted text-to-image jobs. Create a generation, then poll it until it has finished; ' +
      'errors are RFC 9457 problem+json documents with a stable `code`.',
  },
  // Self-hosted: every deployment has its own origin, so the one server is relative (OpenAPI:
  // to where the document is served), and the docs page calls the API that serves it.
  servers: [
    {
      url: '/',
      description:
        'The Easel deployment serving this document, at its root: e.g. http://localhost:8080 for `easel start`. ' +
        'A client generated from openapi.yaml needs that base URL.',
    },
  ],
  tags: [
    { name: 'Generations', description: 'Text-to-image jobs.' },
    {
      name: 'Webhooks',
      description: 'Signed notifications of status changes (Standard Webhooks) and their delivery log.',
    },
    {
      name: 'Models',
      description:
        'The models a generation may name: what each can be asked for, and whether a worker holds it now.',
    },
    {
      name: 'Usage',
      description: 'What each API key used: accelerator time, images and work, from the usage ledger.',
    },
    { name: 'Health', description: 'Probes for orchestrators and load balancers.' },
    { name: 'Operations', description: 'Fleet views for operators; admin API keys only.' },
  ],
};

export function openApiDocument(app: App) {
  return app.getOpenAPI31Document(DOCUMENT_CONFIG);
}

export function createApp(deps: AppDeps): App {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    description: 'An Easel API key: `Authorization: Bearer esl_...`.',
  });

  const metrics = createApiMetrics(deps);
  // First, so the latency it records includes every other middleware and the error handler.
  app.use(metrics.middleware);
  app.use(requestId({ headerName: 'X-Request-Id', limitLength: 200 }));
  app.use(requestLogging(deps.logger));
  app.use(
    bodyLimit({
      maxSize: deps.config.BODY_LIMIT_BYTES,
      onError: () => {
        throw apiError(
          'payload_too_large',
          `The body must not exceed ${deps.config.BODY_LIMIT_BYTES} bytes.`,
        );
      },
    }),
  );
  app.use('/v1/*', bearerAuth(deps.db));

  const models =
    deps.models ??
    createModelCatalog({
      db: deps.db,
      boss: deps.boss,
      cacheMs: deps.config.MODEL_CACHE_SECONDS * 1000,
      defaultModel: deps.config.DEFAULT_MODEL,
    });
  const generations = { ...deps, models };
  app.openapi(
    createGenerationRoute,
    createGenerationHandler({ ...generations, onGenerationCreated: metrics.onGenerationCreated }),
  );
  app.openapi(listGenerationsRoute, listGenerationsHandler(generations));
  app.openapi(getGenerationRoute, getGenerationHandler(generations));
  app.openapi(cancelGenerationRoute, cancelGenerationHandler(generations));
  app.openapi(getGenerationImageRoute, getGenerationImageHandler(generations));
  app.openapi(streamGenerationEventsRoute, streamGenerationEventsHandler(deps));
  app.openapi(streamEventsRoute, streamEventsHandler(deps));
  app.openapi(getWebhookSecretRoute, getWebhookSecretHandler(deps));
  app.openapi(listWebhookDeliveriesRoute, listWebhookDeliveriesHandler(deps));
  app.openapi(redeliverWebhookRoute, redeliverWebhookHandler(deps));
  app.openapi(listDisabledWebhookUrlsRoute, listDisabledWebhookUrlsHandler(deps));
  app.openapi(enableWebhookUrlRoute, enableWebhookUrlHandler(deps));
  registerWebhookEvents(app.openAPIRegistry);
  app.openapi(listModelsRoute, listModelsHandler(deps));
  app.openapi(getModelRoute, getModelHandler(deps));
  app.openapi(listWorkersRoute, listWorkersHandler(deps));
  app.openapi(getUsageRoute, getUsageHandler(deps));
  registerHealthRoutes(app, deps);
  // An ops endpoint for Prometheus, not part of the public API document.
  app.get('/metrics', metrics.handler);

  let document: ReturnType<typeof openApiDocument> | undefined;
  app.get('/openapi.json', (c) => {
    document ??= openApiDocument(app);
    return c.json(document);
  });
  registerDocsRoutes(app, { specUrl: '/openapi.json', title: 'Easel API' });
  registerWallRoutes(app);

  app.onError(createErrorHandler(deps.logger, metrics.onProblem));
  app.notFound(createNotFoundHandler(metrics.onProblem, allowedMethods(app)));
  return app;
}
