import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { writeDemoModel } from './demo/sd-model.ts';
import { FAMILIES, familyFor, loadTextToImage } from './load-model.ts';
import { ModelLoadError } from './model-errors.ts';
import { fillGaussian } from './random.ts';

let root: string;
let counter = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'easel-load-'));
});

after(() => rm(root, { recursive: true, force: true }));

async function demo(): Promise<string> {
  const dir = join(root, `model-${counter++}`);
  await writeDemoModel(dir);
  return dir;
}

async function assertLoadError(dir: string, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(loadTextToImage(dir, { provider: 'cpu' }), (error: unknown) => {
    assert.ok(error instanceof ModelLoadError, `expected ModelLoadError, got ${error}`);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    assert.equal(error.dir, dir);
    return true;
  });
}

test('a missing unet/model.onnx names the file and the expected layout', async () => {
  const dir = await demo();
  await rm(join(dir, 'unet/model.onnx'));
  await assertLoadError(
    dir,
    'model_missing_file',
    /^unet\/model\.onnx: file does not exist .*diffusers\/optimum ONNX layout/,
  );
});

test('a corrupt unet/model.onnx (random bytes) is "not a valid ONNX model"', async () => {
  const dir = await demo();
  const garbage = new Float32Array(4096);
  fillGaussian(garbage, 99);
  await writeFile(join(dir, 'unet/model.onnx'), new Uint8Array(garbage.buffer));
  await assertLoadError(dir, 'model_corrupt', /^unet\/model\.onnx: not a valid ONNX model/);
});

test('a model with the wrong signature fails at load, naming the file and the missing input', async () => {
  const dir = await demo();
  await copyFile(join(dir, 'vae_decoder/model.onnx'), join(dir, 'unet/model.onnx'));
  await assertLoadError(
    dir,
    'model_invalid',
    /^unet\/model\.onnx: expected a tensor input "sample", found inputs: latent_sample/,
  );
});

test('a folder without model_index.json, or with an unknown pipeline, is refused clearly', async () => {
  const dir = await demo();
  const index = JSON.parse(await readFile(join(dir, 'model_index.json'), 'utf8'));
  await writeFile(
    join(dir, 'model_index.json'),
    JSON.stringify({ ...index, _class_name: 'KandinskyPipeline' }),
  );
  await assertLoadError(dir, 'model_invalid', /^model_index\.json: unsupported pipeline "KandinskyPipeline"/);
  await writeFile(join(dir, 'model_index.json'), '{ not json');
  await assertLoadError(dir, 'model_corrupt', /^model_index\.json: not valid JSON/);
  await rm(join(dir, 'model_index.json'));
  await assertLoadError(dir, 'model_missing_file', /^model_index\.json: file does not exist/);
  await assertLoadError(
    join(root, 'nowhere'),
    'model_missing_file',
    /^model_index\.json: file does not exist/,
  );
});

test('a broken scheduler config or a missing tokenizer file names that file', async () => {
  const dir = await demo();
  await writeFile(
    join(dir, 'scheduler/scheduler_config.json'),
    JSON.stringify({ beta_schedule: 'cosine-ish' }),
  );
  await assertLoadError(dir, 'model_invalid', /^scheduler\/scheduler_config\.json: beta_schedule/);
  const other = await demo();
  await rm(join(other, 'tokenizer/vocab.json'));
  await assertLoadError(other, 'model_missing_file', /^tokenizer\/vocab\.json: file does not exist/);
});

test('the cuda provider either loads or fails with an actionable execution_provider_unavailable', async () => {
  const dir = await demo();
  let model: Awaited<ReturnType<typeof loadTextToImage>> | undefined;
  try {
    model = await loadTextToImage(dir, { provider: 'cuda' });
  } catch (error) {
    assert.ok(error instanceof ModelLoadError, `expected ModelLoadError, got ${error}`);
    assert.equal(error.code, 'execution_provider_unavailable');
    assert.match(error.message, /npm run install:cuda/);
    return;
  }
  assert.equal(model.info.provider, 'cuda');
  await model.release();
});

test('the registry: each _class_name belongs to one family, and each family fetches its model_index.json', () => {
  const classNames = FAMILIES.flatMap((family) => family.classNames);
  assert.equal(new Set(classNames).size, classNames.length);
  for (const family of FAMILIES) {
    assert.ok(family.fetchFiles.includes('model_index.json'), family.name);
    assert.ok(family.layout.length > 0, family.name);
    for (const className of family.classNames) assert.equal(familyFor(className), family);
  }
  assert.equal(familyFor('KandinskyCombinedPipeline')?.name, 'kandinsky');
  assert.equal(familyFor('FluxPipeline'), undefined);
  assert.equal(familyFor('constructor'), undefined);
});
