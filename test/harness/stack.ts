// The real stack for end-to-end tests: a fresh database, the S3 server as its own process,
// and the API and GPU worker as separate processes, exactly as deployed; or, to drive one in the
// test's own process (start…In Process), through its start…(config) function.

import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PgBoss } from 'pg-boss';
import { loadApiConfig } from '../../api/config.ts';
import type { ApiHandle } from '../../api/start.ts';
import {
  parseLogLine,
  SERVICES,
  type Service,
  type ServiceName,
  type ServiceProcess,
  startService,
} from '../../bin/local/service-process.ts';
import { createApiKey } from '../../db/api-keys.repository.ts';
import { insertGeneration } from '../../db/generations.repository.ts';
import { createBoss, enqueueGeneration, ensureGenerationQueue } from '../../db/queue.ts';
import type { NewGeneration } from '../../db/types.ts';
import { loadWorkerConfig } from '../../gpu-worker/config.ts';
import type { WorkerHandle } from '../../gpu-worker/start.ts';
import type { ServiceDeps, ServiceHandle } from '../../shared/service.ts';
import { loadSenderConfig } from '../../webhooks/config.ts';
import type { WebhookSenderHandle } from '../../webhooks/start.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import { type InProcessService, startInProcess } from './in-process.ts';
import { DEMO_MODEL_ID, registerDemoModel } from './models.ts';
import { type S3ServerProcess, startS3ServerProcess } from './s3-server.ts';

export interface Stack {
  database: TestDatabase;
  s3: S3ServerProcess;
  dataDir: string;
  env: NodeJS.ProcessEnv;
  apiKey: string;
  /** The API this stack's requests go to, the last one started. */
  api?: Service;
  workers: Service[];
  startApi(extraEnv?: NodeJS.ProcessEnv): Promise<ServiceProcess>;
  startWorker(extraEnv?: NodeJS.ProcessEnv): Promise<ServiceProcess>;
  /** The webhook sender process (webhooks/main.ts); several may run. */
  senders: Service[];
  startWebhookSender(extraEnv?: NodeJS.ProcessEnv): Promise<ServiceProcess>;
  /** The same three in this process, through startApi / startWorker / startWebhookSender. */
  startApiInProcess(extraEnv?: NodeJS.ProcessEnv): Promise<InProcessService<ApiHandle['ready']>>;
  startWorkerInProcess(extraEnv?: NodeJS.ProcessEnv): Promise<InProcessService<WorkerHandle['ready']>>;
  startWebhookSenderInProcess(
    extraEnv?: NodeJS.ProcessEnv,
  ): Promise<InProcessService<WebhookSenderHandle['ready']>>;
  baseUrl(): string;
  request(path: string, init?: RequestInit): Promise<Response>;
  /**
   * Writes a generation and its job the way the API does, but without the API's validation,
   * so tests can create jobs no client could (huge step counts, sizes the model rejects).
   */
  enqueue(overrides?: Partial<NewGeneration>): Promise<string>;
  /**
   * Every JSON log line of every service this stack started, as it arrives:
   * `on('line', (record, service) => …)` where `service` is the ServiceProcess's name
   * ('api', 'worker', 'webhook-sender'); a worker's records carry its `worker_id`.
   */
  logs: EventEmitter<{ line: [record: Record<string, unknown>, service: string] }>;
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Create the database on this server instead of TEST_DATABASE_ADMIN_URL (e.g. an embedded one). */
  adminUrl?: string;
  /** Use this S3 server process (e.g. a restartable one); the stack stops it with the rest. */
  s3?: S3ServerProcess;
}

export async function startStack(
  label: string,
  extraEnv: NodeJS.ProcessEnv = {},
  options: StackOptions = {},
): Promise<Stack> {
  const database = await createTestDatabase(label, options.adminUrl);
  const s3 = options.s3 ?? (await startS3ServerProcess());
  const dataDir = await mkdtemp(join(tmpdir(), `easel-${label}-`));
  const created = await createApiKey(database.db, { name: `${label}-key` });
  // Registered as an operator would, so the API takes creates before the worker has announced it.
  await registerDemoModel(database.db);
  const apiKey = created.key;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: database.url,
    S3_ENDPOINT: s3.endpoint,
    S3_BUCKET: `easel-${label}`.toLowerCase().replace(/[^a-z0-9-]/g, '-'),
    EASEL_DATA_DIR: dataDir,
    PORT: '0',
    LOG_LEVEL: 'info',
    ...extraEnv,
  };
  const verbose = process.env.EASEL_TEST_VERBOSE === '1';
  const logs = new EventEmitter<{ line: [record: Record<string, unknown>, service: string] }>();
  const onLine = (name: string) => (line: string) => {
    if (verbose) process.stderr.write(`[${name}] ${line}\n`);
    if (logs.listenerCount('line') === 0) return;
    const record = parseLogLine(line);
    if (record) logs.emit('line', record, name);
  };
  const processOf = (name: ServiceName, more: NodeJS.ProcessEnv) =>
    startService({ name, env: { ...env, ...more }, onLine: onLine(name) });
  const inProcess = <Ready>(name: ServiceName, start: (deps: ServiceDeps) => Promise<ServiceHandle<Ready>>) =>
    startInProcess({ name, readyMsg: SERVICES[name].readyMsg, start, onLine: onLine(name) });

  let boss: PgBoss | undefined;
  let apiKeyId = '';
  const stack: Stack = {
    database,
    s3,
    dataDir,
    env,
    apiKey,
    workers: [],
    senders: [],
    logs,
    async startWebhookSender(more = {}) {
      const sender = await processOf('webhook-sender', more);
      stack.senders.push(sender);
      return sender;
    },
    async startApi(more = {}) {
      const api = await processOf('api', more);
      stack.api = api;
      return api;
    },
    async startWorker(more = {}) {
      const worker = await processOf('worker', more);
      stack.workers.push(worker);
      return worker;
    },
    async startWebhookSenderInProcess(more = {}) {
      const config = loadSenderConfig({ ...env, ...more });
      // Loaded when asked for: a test that runs the services as processes never loads them here.
      const { startWebhookSender } = await import('../../webhooks/start.ts');
      const sender = await inProcess('webhook-sender', (deps) => startWebhookSender(config, deps));
      stack.senders.push(sender);
      return sender;
    },
    async startApiInProcess(more = {}) {
      const config = loadApiConfig({ ...env, ...more });
      const { startApi } = await import('../../api/start.ts');
      const api = await inProcess('api', (deps) => startApi(config, deps));
      stack.api = api;
      return api;
    },
    async startWorkerInProcess(more = {}) {
      const config = loadWorkerConfig({ ...env, ...more });
      const { startWorker } = await import('../../gpu-worker/start.ts');
      const worker = await inProcess('worker', (deps) => startWorker(config, deps));
      stack.workers.push(worker);
      return worker;
    },
    baseUrl() {
      if (!stack.api) throw new Error('API not started');
      return String(stack.api.ready.url);
    },
    request(path, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has('authorization')) headers.set('authorization', `Bearer ${apiKey}`);
      if (init.body && !headers.has('content-type')) headers.set('content-type', 'application/json');
      return fetch(`${stack.baseUrl()}${path}`, { ...init, headers });
    },
    async enqueue(overrides = {}) {
      if (!boss) {
        boss = createBoss(database.url, { supervise: false, applicationName: 'easel-test' });
        await boss.start();
      }
      const id = randomUUID();
      const producer = boss;
      const model = overrides.model === undefined ? DEMO_MODEL_ID : overrides.model;
      await ensureGenerationQueue(producer, model);
      await database.db.transaction().execute(async (trx) => {
        await insertGeneration(trx, {
          id,
          model,
          api_key_id: apiKeyId,
          prompt: 'a test generation',
          negative_prompt: '',
          width: 64,
          height: 64,
          steps: 2,
          guidance_scale: 7.5,
          num_images: 1,
          seed: 1,
          ...overrides,
        });
        await enqueueGeneration(producer, trx, { id, model });
      });
      return id;
    },
    async stop() {
      await boss?.stop({ graceful: false });
      await Promise.allSettled([
        ...stack.workers.map((w) => w.stop()),
        ...stack.senders.map((s) => s.stop()),
        stack.api?.stop(),
      ]);
      await s3.stop();
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  apiKeyId = created.apiKey.id;
  return stack;
}
