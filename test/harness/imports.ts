// Reads the project's import graph from the sources (TypeScript's preProcessFile: static imports,
// re-exports and literal dynamic import()s), for the tests that check what may load what.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ImportEdge {
  /** Repository-relative path of the importing file. */
  from: string;
  /** Repository-relative path of the imported file, or the package name. */
  to: string;
  kind: 'file' | 'package';
  dynamic: boolean;
}

function resolveLocal(from: string, specifier: string): string {
  const target = resolve(dirname(from), specifier);
  if (existsSync(target) && statSync(target).isFile()) return target;
  for (const ext of ['.ts', '.js', '/index.ts', '/index.js'])
    if (existsSync(target + ext)) return target + ext;
  throw new Error(`${relative(REPO_ROOT, from)} imports ${specifier}, which does not exist`);
}

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? specifier);
}

/** The imports one file makes (repository-relative path in, edges out). */
export function importsOf(file: string): ImportEdge[] {
  const path = join(REPO_ROOT, file);
  if (!/\.(ts|js|mjs)$/.test(path)) return [];
  const text = readFileSync(path, 'utf8');
  const info = ts.preProcessFile(text, true, true);
  return info.importedFiles.flatMap(({ fileName, pos }): ImportEdge[] => {
    // preProcessFile does not say which imports are dynamic: look just before the specifier.
    const dynamic = /import\s*\(\s*$/.test(text.slice(Math.max(0, pos - 20), pos));
    if (fileName.startsWith('.')) {
      return [{ from: file, to: relative(REPO_ROOT, resolveLocal(path, fileName)), kind: 'file', dynamic }];
    }
    if (fileName.startsWith('node:') || builtinModules.includes(fileName)) return [];
    return [{ from: file, to: packageName(fileName), kind: 'package', dynamic }];
  });
}

/** Every repository file and package reachable from the entry points (dynamic imports included). */
export function importClosure(entryPoints: readonly string[]) {
  const files = new Set<string>();
  const packages = new Map<string, string>();
  const pending = [...entryPoints];
  while (pending.length > 0) {
    const file = pending.pop() as string;
    if (files.has(file)) continue;
    files.add(file);
    for (const edge of importsOf(file)) {
      if (edge.kind === 'file') pending.push(edge.to);
      else packages.set(edge.to, file);
    }
  }
  return { files: [...files], packages };
}
