// Reads infra/k8s without kustomize or a cluster: walks a kustomization's resources (files and
// folders with their own kustomization.yaml), applies its ConfigMap patches, and checks objects
// against the Kubernetes and KEDA schemas (kubernetes-models' validate()) and, for unknown or
// misspelt fields that those schemas let through, against the same models' TypeScript types.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT } from '../harness/imports.ts';

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: manifests are plain parsed YAML
  spec?: any;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export interface Loaded {
  /** Repository-relative file the object came from. */
  file: string;
  object: K8sObject;
}

export interface Kustomization {
  dir: string;
  objects: Loaded[];
  /** Problems found while walking it (missing files, unsupported fields). */
  problems: string[];
  images: { name: string; newName?: string; newTag?: string }[];
  namespace?: string;
}

const rel = (path: string) => relative(REPO_ROOT, path);

/** Every YAML document of a file, parsed strictly (a YAML error is thrown, naming the file). */
export function readYamlDocuments(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(join(REPO_ROOT, file), 'utf8'));
  const documents = Array.isArray(docs) ? docs : [docs];
  return documents.flatMap((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as unknown;
    return value === null || value === undefined ? [] : [value];
  });
}

const KNOWN_FIELDS = new Set(['apiVersion', 'kind', 'resources', 'patches', 'images', 'namespace']);

/** The objects a kustomization builds, as far as this reading goes (see the file's header). */
export function loadKustomization(dir: string): Kustomization {
  const result: Kustomization = { dir, objects: [], problems: [], images: [] };
  const path = join(REPO_ROOT, dir, 'kustomization.yaml');
  if (!existsSync(path)) {
    result.problems.push(`${dir}: no kustomization.yaml`);
    return result;
  }
  const [k] = readYamlDocuments(rel(path)) as Record<string, unknown>[];
  if (!k) throw new Error(`${dir}/kustomization.yaml is empty`);
  for (const field of Object.keys(k)) {
    // A field this reader does not apply would make its checks describe something kustomize
    // does not build.
    if (!KNOWN_FIELDS.has(field))
      result.problems.push(`${dir}/kustomization.yaml: field ${field} is not checked`);
  }
  result.namespace = k.namespace as string | undefined;
  result.images = (k.images as Kustomization['images'] | undefined) ?? [];
  for (const resource of (k.resources as string[] | undefined) ?? []) {
    const target = join(REPO_ROOT, dir, resource);
    if (!existsSync(target)) {
      result.problems.push(`${dir}/kustomization.yaml lists ${resource}, which does not exist`);
      continue;
    }
    if (statSync(target).isDirectory()) {
      const inner = loadKustomization(rel(target));
      result.objects.push(...inner.objects);
      result.problems.push(...inner.problems);
      result.images.push(...inner.images);
    } else {
      for (const doc of readYamlDocuments(rel(target))) {
        result.objects.push({ file: rel(target), object: doc as K8sObject });
      }
    }
  }
  for (const patch of (k.patches as { path?: string; patch?: string; target?: unknown }[] | undefined) ??
    []) {
    if (!patch.path || patch.target) {
      result.problems.push(`${dir}: only patches given by path, without target, are checked`);
      continue;
    }
    const file = join(dir, patch.path);
    if (!existsSync(join(REPO_ROOT, file))) {
      result.problems.push(`${dir}/kustomization.yaml patches with ${patch.path}, which does not exist`);
      continue;
    }
    const docs = readYamlDocuments(file) as K8sObject[];
    if (docs.length !== 1) result.problems.push(`${file}: one patch per file`);
    for (const doc of docs) {
      // Strategic merge of a ConfigMap is a merge of its data: what this reader applies.
      if (doc.kind !== 'ConfigMap') {
        result.problems.push(`${file}: only ConfigMap patches are applied here, not ${doc.kind}`);
        continue;
      }
      const target = result.objects.find(
        ({ object }) => object.kind === doc.kind && object.metadata?.name === doc.metadata?.name,
      );
      if (!target) {
        result.problems.push(
          `${file} patches ConfigMap ${doc.metadata?.name}, which is not among the resources`,
        );
        continue;
      }
      target.object = { ...target.object, data: { ...target.object.data, ...doc.data } };
    }
  }
  return result;
}

/** Every YAML file under a folder (repository-relative paths in and out). */
export function yamlFilesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(REPO_ROOT, dir), { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...yamlFilesUnder(path));
    else if (/\.ya?ml$/.test(entry.name)) out.push(path);
  }
  return out.sort();
}

/** kubernetes-models' (or @kubernetes-models/keda's) module of an object's kind. */
export function modelModule(apiVersion: string, kind: string): string {
  if (apiVersion.startsWith('keda.sh/')) return `@kubernetes-models/keda/${apiVersion}/${kind}`;
  return `kubernetes-models/${apiVersion}/${kind}`;
}

/** Validates with the kind's model; returns the error message, or undefined when it is valid. */
export async function validateWithModel(object: K8sObject): Promise<string | undefined> {
  const module = (await import(modelModule(object.apiVersion, object.kind))) as Record<
    string,
    new (
      data: unknown,
    ) => { validate(): void }
  >;
  const Model = module[object.kind];
  if (!Model) return `no model for ${object.apiVersion} ${object.kind}`;
  try {
    new Model(object).validate();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/**
 * Type-checks each object as an object literal of its model's TypeScript interface: excess
 * property checks catch a misspelt or misplaced field (`readinesProbe`, `resources` on the pod),
 * which the JSON schemas accept. Returns one line per problem.
 */
export function typeCheck(objects: readonly Loaded[]): string[] {
  const virtual = new Map<string, string>();
  const origin = new Map<string, string>();
  objects.forEach(({ file, object }, i) => {
    const path = join(REPO_ROOT, 'test', 'infra', `__manifest_${i}.ts`);
    virtual.set(
      path,
      `import type { I${object.kind} } from '${modelModule(object.apiVersion, object.kind)}';\n` +
        `export const manifest: I${object.kind} = ${JSON.stringify(object, null, 1)};\n`,
    );
    origin.set(path, `${file} (${object.kind} ${object.metadata?.name})`);
  });
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { readFile, fileExists, getSourceFile } = host;
  host.readFile = (f) => virtual.get(f) ?? readFile.call(host, f);
  host.fileExists = (f) => virtual.has(f) || fileExists.call(host, f);
  host.getSourceFile = (f, language, ...rest) => {
    const text = virtual.get(f);
    return text === undefined
      ? getSourceFile.call(host, f, language, ...rest)
      : ts.createSourceFile(f, text, language);
  };
  const program = ts.createProgram([...virtual.keys()], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? (origin.get(d.file.fileName) ?? d.file.fileName) : '';
    return `${where}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`;
  });
}

/** A pod template's containers (init containers too), with the object they belong to. */
export function containersOf(object: K8sObject) {
  const pod = object.spec?.template?.spec;
  if (!pod) return [];
  return [...(pod.initContainers ?? []), ...(pod.containers ?? [])] as Container[];
}

export interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: {
    name: string;
    value?: string;
    valueFrom?: {
      secretKeyRef?: { name: string; key: string; optional?: boolean };
      configMapKeyRef?: { name: string; key: string; optional?: boolean };
      fieldRef?: { fieldPath: string };
    };
  }[];
  envFrom?: {
    configMapRef?: { name: string; optional?: boolean };
    secretRef?: { name: string; optional?: boolean };
  }[];
  // biome-ignore lint/suspicious/noExplicitAny: the rest of the container, as parsed
  [field: string]: any;
}

/**
 * The environment a container gets from its manifests (envFrom, then env), with the values the
 * ConfigMaps and Secrets in `objects` hold; fieldRef values are stand-ins. `declared` records
 * which object named each variable, for messages.
 */
export function containerEnv(container: Container, objects: readonly Loaded[]) {
  const env: Record<string, string> = {};
  const problems: string[] = [];
  const find = (kind: string, name: string) =>
    objects.find(({ object }) => object.kind === kind && object.metadata.name === name)?.object;
  const secretData = (secret: K8sObject) => ({
    ...Object.fromEntries(
      Object.entries(secret.data ?? {}).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]),
    ),
    ...secret.stringData,
  });
  for (const source of container.envFrom ?? []) {
    const ref = source.configMapRef ?? source.secretRef;
    const kind = source.configMapRef ? 'ConfigMap' : 'Secret';
    if (!ref) continue;
    const found = find(kind, ref.name);
    if (!found) {
      if (!ref.optional) problems.push(`envFrom ${kind} ${ref.name} does not exist`);
      continue;
    }
    Object.assign(env, kind === 'Secret' ? secretData(found) : found.data);
  }
  for (const variable of container.env ?? []) {
    const from = variable.valueFrom;
    if (variable.value !== undefined) env[variable.name] = variable.value;
    else if (from?.fieldRef) env[variable.name] = `fieldref-${from.fieldRef.fieldPath.replace(/\W/g, '-')}`;
    else {
      const ref = from?.secretKeyRef ?? from?.configMapKeyRef;
      const kind = from?.secretKeyRef ? 'Secret' : 'ConfigMap';
      if (!ref) {
        problems.push(`env ${variable.name} has neither a value nor a known valueFrom`);
        continue;
      }
      const found = find(kind, ref.name);
      const data = found ? (kind === 'Secret' ? secretData(found) : found.data) : undefined;
      const value = data?.[ref.key];
      if (value === undefined) {
        if (!ref.optional) problems.push(`env ${variable.name}: ${kind} ${ref.name} has no key ${ref.key}`);
        continue;
      }
      env[variable.name] = value;
    }
  }
  return { env, problems };
}
