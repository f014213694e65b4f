// The local command line, run as a user runs it: `node bin/easel.ts …` in a child process, with
// the demo models written by `easel models demo` into a temporary folder.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { type CliRun, runEasel } from './testing.ts';

let dir = '';
let model = '';
let translator = '';

function easel(...args: string[]): Promise<CliRun> {
  return runEasel(args, process.env);
}

async function ok(...args: string[]): Promise<string> {
  const run = await easel(...args);
  assert.equal(run.code, 0, `easel ${args.join(' ')} failed:\n${run.stderr}`);
  return run.stdout;
}

interface GenerateJson {
  seed: number;
  scheduler: string;
  prompt: string;
  prompt_en: string;
  translated: boolean;
  prompt_truncated: boolean;
  files: string[];
  timings: Record<string, number>;
}

async function generate(out: string, ...args: string[]): Promise<GenerateJson> {
  const stdout = await ok(
    'generate',
    '--model',
    model,
    '--steps',
    '3',
    '--out',
    join(dir, out),
    '--json',
    ...args,
  );
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 1, 'one JSON object on stdout');
  return JSON.parse(lines[0] as string) as GenerateJson;
}

const CYRILLIC = /\p{Script=Cyrillic}/u;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'easel-cli-'));
  model = join(dir, 'model');
  translator = join(dir, 'translator');
  await Promise.all([ok('models', 'demo', model), ok('models', 'demo', '--translator', translator)]);
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('easel generate', () => {
  test('writes a JPEG of the requested size and reports the seed and timings as JSON', async () => {
    const report = await generate(
      'cat.jpg',
      '--prompt',
      'a photo of a cat',
      '--width',
      '64',
      '--height',
      '48',
      '--seed',
      '42',
    );
    assert.equal(report.seed, 42);
    assert.equal(report.prompt, 'a photo of a cat');
    assert.equal(report.prompt_en, 'a photo of a cat');
    assert.equal(report.translated, false);
    assert.equal(report.prompt_truncated, false);
    assert.equal(typeof report.scheduler, 'string');
    assert.deepEqual(report.files, [join(dir, 'cat.jpg')]);
    assert.deepEqual(Object.keys(report.timings).sort(), [
      'decode',
      'denoise',
      'encode',
      'jpeg',
      'load',
      'translate',
    ]);
    const meta = await sharp(join(dir, 'cat.jpg')).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 64, 48]);
  });

  test('the same seed gives byte-identical files; a random seed is reported and reproduces', async () => {
    const args = ['--prompt', 'a red barn', '--width', '64', '--height', '64'];
    await generate('a.jpg', ...args, '--seed', '1234');
    await generate('b.jpg', ...args, '--seed', '1234');
    await generate('c.jpg', ...args, '--seed', '1235');
    const [a, b, c] = await Promise.all(['a.jpg', 'b.jpg', 'c.jpg'].map((f) => readFile(join(dir, f))));
    assert.ok(a?.equals(b as Buffer), 'same seed, same bytes');
    assert.ok(!a?.equals(c as Buffer), 'another seed, another image');

    const random = await generate('r.jpg', ...args);
    assert.ok(Number.isInteger(random.seed) && random.seed >= 0 && random.seed <= 0xffff_ffff);
    await generate('r2.jpg', ...args, '--seed', String(random.seed));
    const [r, r2] = await Promise.all(['r.jpg', 'r2.jpg'].map((f) => readFile(join(dir, f))));
    assert.ok(r?.equals(r2 as Buffer));
  });

  test('--num-images N writes FILE-0.jpg … FILE-(N-1).jpg; image i is seed + i', async () => {
    const args = ['--prompt', 'a lighthouse', '--width', '64', '--height', '64', '--scheduler', 'ddim'];
    const batch = await generate('batch.jpg', ...args, '--seed', '10', '--num-images', '2');
    assert.deepEqual(batch.files, [join(dir, 'batch-0.jpg'), join(dir, 'batch-1.jpg')]);
    assert.equal(batch.scheduler, 'ddim');
    await generate('single.jpg', ...args, '--seed', '11');
    const [second, single] = await Promise.all(
      ['batch-1.jpg', 'single.jpg'].map((f) => readFile(join(dir, f))),
    );
    assert.ok(second?.equals(single as Buffer));
  });

  test('with --translator a Russian prompt is translated before encoding', async () => {
    const report = await generate(
      'ru.jpg',
      '--prompt',
      'кошка на крыше',
      '--translator',
      translator,
      '--width',
      '64',
      '--height',
      '64',
    );
    assert.equal(report.prompt, 'кошка на крыше');
    assert.equal(report.translated, true);
    assert.ok(report.prompt_en.trim() !== '' && !CYRILLIC.test(report.prompt_en), report.prompt_en);
    assert.ok(report.timings.translate !== undefined && report.timings.translate > 0);
  });

  test('without --json prints a short summary naming the file and the seed', async () => {
    const out = join(dir, 'plain.jpg');
    const stdout = await ok(
      'generate',
      '--model',
      model,
      '--prompt',
      'a boat',
      '--width',
      '64',
      '--height',
      '64',
      '--steps',
      '2',
      '--seed',
      '5',
      '--out',
      out,
    );
    assert.match(stdout, new RegExp(`wrote ${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(64×64\\)`));
    assert.match(stdout, /seed 5, scheduler \w+/);
  });

  test('a missing model folder or file: exit 1, one line naming it', async () => {
    const missing = join(dir, 'no-such-model');
    const run = await easel('generate', '--model', missing, '--prompt', 'x', '--out', join(dir, 'x.jpg'));
    assert.equal(run.code, 1);
    assert.equal(run.stderr, `easel generate: model folder ${missing} does not exist\n`);

    const broken = join(dir, 'broken');
    await ok('models', 'demo', broken);
    await rm(join(broken, 'unet', 'model.onnx'));
    const file = await easel('generate', '--model', broken, '--prompt', 'x', '--out', join(dir, 'x.jpg'));
    assert.equal(file.code, 1);
    assert.match(file.stderr, /^easel generate: unet\/model\.onnx: file does not exist/);
    assert.equal(file.stderr.trim().split('\n').length, 1);
    assert.doesNotMatch(file.stderr, /\n\s+at /, 'no stack trace');
  });

  test('bad flags are usage errors: exit 2 with the usage text', async () => {
    for (const args of [
      ['--model', model, '--prompt', 'x', '--out', 'x.jpg', '--bogus'],
      ['--model', model, '--prompt', 'x', '--out', 'x.jpg', '--width', '65'],
      ['--model', model, '--prompt', 'x', '--out', 'x.jpg', '--seed', '4294967296'],
      ['--model', model, '--prompt', 'x', '--out', 'x.jpg', '--scheduler', 'plms'],
      ['--model', model, '--prompt', 'x', '--out', 'x.jpg', '--translate', 'always'],
      ['--model', model, '--out', 'x.jpg'],
    ]) {
      const run = await easel('generate', ...args);
      assert.equal(run.code, 2, args.join(' '));
      assert.match(run.stderr, /^easel generate: .+\n\nusage: easel generate/);
    }
  });
});

describe('easel tokenize, translate, models, help', () => {
  test('tokenize prints the ids the text encoder receives, BOS and EOS included, no padding', async () => {
    const stdout = await ok('tokenize', '--model', model, 'a photo of a cat');
    assert.deepEqual(JSON.parse(stdout), [49406, 320, 1125, 539, 320, 2368, 49407]);
  });

  test('translate prints an English (non-Cyrillic) translation', async () => {
    const stdout = await ok('translate', '--model', translator, 'кошка на крыше');
    assert.ok(stdout.trim() !== '' && !CYRILLIC.test(stdout), stdout);
  });

  test('a missing translator folder is exit 1 naming it', async () => {
    const missing = join(dir, 'no-translator');
    const run = await easel('translate', '--model', missing, 'привет');
    assert.equal(run.code, 1);
    assert.equal(run.stderr, `easel translate: translator folder ${missing} does not exist\n`);
  });

  test('--help lists every command; unknown commands exit 2', async () => {
    const help = await ok('--help');
    for (const command of ['start', 'migrate', 'generate', 'tokenize', 'translate', 'models']) {
      assert.match(help, new RegExp(`^  ${command} `, 'm'));
    }
    assert.match(await ok('models', '--help'), /easel models fetch REPO_ID --to DIR/);
    const unknown = await easel('paint');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command 'paint'[\s\S]*usage: easel/);
    const sub = await easel('models', 'download');
    assert.equal(sub.code, 2);
  });
});
