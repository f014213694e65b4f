import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import ort from 'onnxruntime-node';
import { ensureDemoModel, writeDemoModel } from './sd-model.ts';

let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'easel-demo-'));
});

after(() => rm(root, { recursive: true, force: true }));

async function folderSize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

async function signature(path: string) {
  const session = await ort.InferenceSession.create(path);
  try {
    const describe = (list: readonly ort.InferenceSession.ValueMetadata[]) =>
      list.map((meta) => (meta.isTensor ? `${meta.name}:${meta.type}[${meta.shape.join(',')}]` : meta.name));
    return { inputs: describe(session.inputMetadata), outputs: describe(session.outputMetadata) };
  } finally {
    await session.release();
  }
}

test('writes the diffusers/optimum layout with SD 1.x configs and the CLIP tokenizer files', async () => {
  const dir = join(root, 'layout');
  await writeDemoModel(dir);
  const index = JSON.parse(await readFile(join(dir, 'model_index.json'), 'utf8'));
  assert.equal(index._class_name, 'OnnxStableDiffusionPipeline');
  assert.deepEqual(index.unet, ['diffusers', 'OnnxRuntimeModel']);
  assert.deepEqual(index.tokenizer, ['transformers', 'CLIPTokenizer']);
  const scheduler = JSON.parse(await readFile(join(dir, 'scheduler/scheduler_config.json'), 'utf8'));
  assert.deepEqual(
    [
      scheduler._class_name,
      scheduler.beta_start,
      scheduler.beta_end,
      scheduler.beta_schedule,
      scheduler.timestep_spacing,
      scheduler.steps_offset,
    ],
    ['EulerDiscreteScheduler', 0.00085, 0.012, 'scaled_linear', 'leading', 1],
  );
  const vae = JSON.parse(await readFile(join(dir, 'vae_decoder/config.json'), 'utf8'));
  assert.equal(vae.scaling_factor, 0.18215);
  assert.deepEqual((await readdir(join(dir, 'tokenizer'))).sort(), [
    'merges.txt',
    'special_tokens_map.json',
    'tokenizer_config.json',
    'vocab.json',
  ]);
  const size = await folderSize(dir);
  assert.ok(size < 4_000_000, `demo model is ${size} bytes`);
});

test('the ONNX parts have the real SD I/O names, dtypes and dynamic axes', async () => {
  const dir = join(root, 'signatures');
  await writeDemoModel(dir);
  assert.deepEqual(await signature(join(dir, 'text_encoder/model.onnx')), {
    inputs: ['input_ids:int32[batch,sequence]'],
    outputs: ['last_hidden_state:float32[batch,sequence,32]', 'pooler_output:float32[batch,32]'],
  });
  assert.deepEqual(await signature(join(dir, 'unet/model.onnx')), {
    inputs: [
      'sample:float32[batch,4,height,width]',
      'timestep:float32[1]',
      'encoder_hidden_states:float32[batch,sequence,32]',
    ],
    outputs: ['out_sample:float32[batch,4,height,width]'],
  });
  assert.deepEqual(await signature(join(dir, 'vae_decoder/model.onnx')), {
    inputs: ['latent_sample:float32[batch,4,latent_height,latent_width]'],
    outputs: ['sample:float32[batch,3,height,width]'],
  });

  const variant = join(root, 'signatures-int64');
  await writeDemoModel(variant, { timestepType: 'int64', inputIdsType: 'int64', timestepPerSample: true });
  assert.deepEqual((await signature(join(variant, 'text_encoder/model.onnx'))).inputs, [
    'input_ids:int64[batch,sequence]',
  ]);
  assert.equal((await signature(join(variant, 'unet/model.onnx'))).inputs[1], 'timestep:int64[batch]');
});

test('the weights are seeded: two writes are byte-identical', async () => {
  const [a, b] = [join(root, 'same-a'), join(root, 'same-b')];
  await Promise.all([writeDemoModel(a), writeDemoModel(b)]);
  for (const part of ['text_encoder', 'unet', 'vae_decoder']) {
    const [x, y] = await Promise.all([
      readFile(join(a, part, 'model.onnx')),
      readFile(join(b, part, 'model.onnx')),
    ]);
    assert.ok(x.equals(y), part);
  }
});

test('ensureDemoModel writes once, atomically, and leaves an existing model alone', async () => {
  const parent = join(root, 'ensure');
  const dir = join(parent, 'demo');
  // Two workers booting together: both get a complete model, neither clobbers the other.
  const [first, second] = await Promise.all([ensureDemoModel(dir), ensureDemoModel(dir)]);
  assert.equal(first, dir);
  assert.equal(second, dir);
  assert.deepEqual(await readdir(parent), ['demo'], 'no staging folders are left behind');
  const before = await stat(join(dir, 'unet/model.onnx'));
  assert.equal(await ensureDemoModel(dir), dir);
  const afterCall = await stat(join(dir, 'unet/model.onnx'));
  assert.equal(afterCall.mtimeMs, before.mtimeMs);
  assert.equal(afterCall.ino, before.ino);
});

test('ensureDemoModel refuses to write into a non-empty folder that is not a model', async () => {
  const dir = join(root, 'occupied');
  await mkdir(dir);
  await writeFile(join(dir, 'notes.txt'), 'mine');
  await assert.rejects(ensureDemoModel(dir), /exists but holds no model_index\.json/);
  assert.deepEqual(await readdir(dir), ['notes.txt']);
  assert.deepEqual(
    (await readdir(root)).filter((name) => name.startsWith('occupied.tmp-')),
    [],
  );
});
