// The demo model's card, read from its folder the way a worker reads it at start, is what the
// API-only tests register for it (test/harness/models.ts), and easel-model.json narrows it.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeDemoModel } from '../gpu-worker/models/demo/sd-model.ts';
import { MODEL_CARD_FILE, readModelCard } from '../gpu-worker/models/model-card.ts';
import { DEMO_MODEL } from './harness/models.ts';

test('the demo model folder announces what the harness registers for it', async (t) => {
  const dir = join(await mkdtemp(join(tmpdir(), 'easel-card-')), 'demo');
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeDemoModel(dir);
  const card = await readModelCard(dir);
  assert.equal(card.id, DEMO_MODEL.id);
  assert.equal(card.family.name, DEMO_MODEL.family);
  assert.deepEqual(card.capabilities, DEMO_MODEL.capabilities);
  assert.equal((await readModelCard(dir, 'other-id')).id, 'other-id');
});

test("easel-model.json sets the id and narrows the family's capabilities, and may not widen them", async (t) => {
  const dir = join(await mkdtemp(join(tmpdir(), 'easel-card-')), 'Turbo Model');
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeDemoModel(dir);
  assert.equal((await readModelCard(dir)).id, 'turbo-model', 'the folder name made into an id');

  const card = {
    id: 'turbo',
    capabilities: {
      samplers: ['euler_a', 'lcm'],
      steps: { min: 1, max: 8, default: 4 },
      guidance_scale: { max: 2, default: 0 },
      width: { min: 256, max: 1024, multiple_of: 64, default: 512 },
      negative_prompt: false,
      languages: ['en', 'ru'],
    },
  };
  await writeFile(join(dir, MODEL_CARD_FILE), JSON.stringify(card));
  const read = await readModelCard(dir);
  assert.equal(read.id, 'turbo');
  assert.deepEqual(read.capabilities.samplers, ['euler_a', 'lcm']);
  assert.deepEqual(read.capabilities.karras_samplers, ['euler_a'], 'only the offered samplers keep karras');
  assert.deepEqual(read.capabilities.steps, { min: 1, max: 8, default: 4 });
  assert.deepEqual(read.capabilities.guidance_scale, { min: 0, max: 2, default: 0 });
  assert.deepEqual(read.capabilities.width, { min: 256, max: 1024, multiple_of: 64, default: 512 });
  assert.equal(read.capabilities.negative_prompt, false);

  for (const [capabilities, message] of [
    [{ steps: { max: 500 } }, /steps: 1\.\.500 \(family: 1\.\.150\)/],
    [{ width: { multiple_of: 12, min: 72, max: 1020, default: 516 } }, /width.multiple_of: 12/],
    [{ steps: { default: 9, max: 8 } }, /steps: needs min <= default <= max/],
    [{ samplers: ['heun'] }, /samplers/],
  ] as const) {
    await writeFile(join(dir, MODEL_CARD_FILE), JSON.stringify({ capabilities }));
    await assert.rejects(readModelCard(dir), message);
  }
  await writeFile(join(dir, MODEL_CARD_FILE), JSON.stringify({ id: 'Bad Id' }));
  await assert.rejects(readModelCard(dir), /easel-model\.json.*id/);
});
