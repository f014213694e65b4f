// Reads infra/'s Dockerfiles and their per-Dockerfile .dockerignore files the way the tests need
// them: what each image copies, its CMD, its ENV and what its build context leaves out. No Docker
// engine runs here, so this is how the images are checked.
import { cpSync, existsSync, readFileSync, symlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { REPO_ROOT } from '../harness/imports.ts';

export interface Dockerfile {
  path: string;
  text: string;
  /** Instructions with their continuation lines joined, comments dropped. */
  instructions: { keyword: string; args: string }[];
  /** Repository paths the final stage copies from the build context (not `--from=` stages). */
  copied: string[];
  /** The exec-form CMD, or undefined when there is none or it is in shell form. */
  cmd: string[] | undefined;
  /** ENV of the final stage. */
  env: Record<string, string>;
}

export function readDockerfile(path: string): Dockerfile {
  const text = readFileSync(join(REPO_ROOT, path), 'utf8');
  const instructions: { keyword: string; args: string }[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    pending += `${pending ? ' ' : ''}${line.replace(/\\$/, '').trim()}`;
    if (line.endsWith('\\')) continue;
    const match = /^(\S+)\s*(.*)$/.exec(pending);
    if (match?.[1]) instructions.push({ keyword: match[1].toUpperCase(), args: match[2] ?? '' });
    pending = '';
  }
  const lastFrom = instructions.findLastIndex((i) => i.keyword === 'FROM');
  const final = instructions.slice(lastFrom);
  const copied: string[] = [];
  const env: Record<string, string> = {};
  let cmd: string[] | undefined;
  for (const { keyword, args } of final) {
    if (keyword === 'COPY' && !/--from=/.test(args)) {
      const parts = args.split(/\s+/).filter((p) => !p.startsWith('--'));
      copied.push(...parts.slice(0, -1).map((p) => p.replace(/^\.\//, '').replace(/\/$/, '')));
    }
    if (keyword === 'ENV') {
      for (const pair of args.split(/\s+/)) {
        const [name, ...value] = pair.split('=');
        if (name && value.length > 0) env[name] = value.join('=');
      }
    }
    if (keyword === 'CMD') cmd = args.startsWith('[') ? (JSON.parse(args) as string[]) : undefined;
  }
  return { path, text, instructions, copied, cmd, env };
}

/** The build context's ignore rules for a Dockerfile (BuildKit's `<Dockerfile>.dockerignore`). */
export interface DockerIgnore {
  path: string;
  patterns: { pattern: string; negate: boolean; regex: RegExp }[];
  /** Whether a repository-relative file is left out of the build context. */
  ignores(file: string): boolean;
}

function globToRegex(glob: string): RegExp {
  let source = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === '*' && glob[i + 1] === '*') {
      // `**/` matches any number of folders, including none.
      source += glob[i + 2] === '/' ? '(?:.*/)?' : '.*';
      i += glob[i + 2] === '/' ? 2 : 1;
    } else if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${source}$`);
}

/**
 * Docker's rule: the last pattern that matches the path or one of its parent folders decides.
 * (Enough for the simple patterns infra/ uses: `*`, `**`, `!folder`, `**\/*.test.ts`.)
 */
export function readDockerIgnore(dockerfile: string): DockerIgnore | undefined {
  const path = `${dockerfile}.dockerignore`;
  if (!existsSync(join(REPO_ROOT, path))) return undefined;
  const patterns = readFileSync(join(REPO_ROOT, path), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((line) => {
      const negate = line.startsWith('!');
      const pattern = (negate ? line.slice(1) : line).replace(/^\//, '').replace(/\/$/, '');
      return { pattern, negate, regex: globToRegex(pattern) };
    });
  return {
    path,
    patterns,
    ignores(file) {
      const parts = file.split('/');
      const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
      let ignored = false;
      for (const { negate, regex } of patterns) {
        if (candidates.some((c) => regex.test(c))) ignored = !negate;
      }
      return ignored;
    },
  };
}

/** The Dockerfile of each image name the compose file and the manifests use. */
export const IMAGES: Record<string, string> = {
  'easel-api': 'infra/Dockerfile.api',
  'easel-gpu-worker': 'infra/Dockerfile.gpu-worker',
};

/** `easel-api:local` or `easel-api` → its Dockerfile. */
export function dockerfileOfImage(image: string): string | undefined {
  return IMAGES[image.replace(/:[^/:]+$/, '')];
}

/**
 * Lays out in `target` the files a Dockerfile's final stage copies from the build context (what
 * its .dockerignore lets through), with the repository's node_modules linked in place of the
 * image's `npm ci` (which test/image-contents.test.ts checks covers every imported package).
 * Processes started there find exactly the project files the image would hold: a file read at
 * run time that the image lacks fails here as it would in the container.
 */
export function stageImage(dockerfile: string, target: string): void {
  const image = readDockerfile(dockerfile);
  const ignore = readDockerIgnore(dockerfile);
  for (const path of image.copied) {
    cpSync(join(REPO_ROOT, path), join(target, path), {
      recursive: true,
      filter: (source) => {
        const file = relative(REPO_ROOT, source);
        return file === '' || !ignore?.ignores(file);
      },
    });
  }
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(target, 'node_modules'), 'dir');
}
