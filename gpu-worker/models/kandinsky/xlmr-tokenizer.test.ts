// The XLM-R tokenizer wrapper on the demo Kandinsky 2.1 tokenizer folder.
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { writeDemoKandinskyModel } from '../demo/kandinsky-model.ts';
import { ModelLoadError } from '../model-errors.ts';
import { loadXlmrTokenizer, XLMR_MAX_LENGTH, type XlmrTokenizer } from './xlmr-tokenizer.ts';

const BOS = 0;
const PAD = 1;
const EOS = 2;
const UNK = 3;

let dir: string;
let tokenizer: XlmrTokenizer;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'easel-xlmr-'));
  await writeDemoKandinskyModel(dir, { version: '2.1' });
  tokenizer = await loadXlmrTokenizer(dir, 'tokenizer');
});

after(() => rm(dir, { recursive: true, force: true }));

/** The number of real tokens (<s> … </s>) of an encoding, checked for its shape on the way. */
function checkShape(text: string): number {
  const { ids, mask, truncated } = tokenizer.encode(text);
  assert.equal(XLMR_MAX_LENGTH, 77);
  assert.equal(ids.length, 77, `${text}: ids`);
  assert.equal(mask.length, 77, `${text}: mask`);
  const length = mask.indexOf(0) === -1 ? 77 : mask.indexOf(0);
  assert.ok(length >= 2, `${text}: at least <s> and </s>`);
  assert.equal(ids[0], BOS, `${text}: starts with <s>`);
  assert.equal(ids[length - 1], EOS, `${text}: </s> right before the padding`);
  assert.deepEqual(ids.slice(length), Array(77 - length).fill(PAD), `${text}: padded with <pad>`);
  assert.deepEqual(mask, [...Array(length).fill(1), ...Array(77 - length).fill(0)], `${text}: mask`);
  // No special id inside the text itself.
  for (const id of ids.slice(1, length - 1))
    assert.ok(id > UNK, `${text}: special id ${id} inside the prompt`);
  assert.equal(truncated, false);
  return length;
}

test('ids start with <s> (0), end with </s> (2) before <pad> (1) to 77; the mask covers the real tokens', () => {
  assert.equal(checkShape('a red cat on the roof'), 8, '<s> + 6 words + </s>');
  assert.equal(checkShape('красный кот на крыше'), 6, '<s> + 4 words + </s>');
  assert.equal(checkShape('a red cat, digital art'), 8);
});

test('the empty prompt is <s> </s> and 75 pads', () => {
  const { ids, mask, truncated } = tokenizer.encode('');
  assert.deepEqual(ids, [BOS, EOS, ...Array(75).fill(PAD)]);
  assert.deepEqual(mask, [1, 1, ...Array(75).fill(0)]);
  assert.equal(truncated, false);
});

test('Russian and English prompts encode without <unk> (3), word for word', () => {
  const ru = tokenizer.encode('красный кот на крыше');
  const en = tokenizer.encode('a red cat on the roof, digital art');
  for (const { ids } of [ru, en]) assert.ok(!ids.includes(UNK), `<unk> in ${ids}`);
  // Whole-word pieces: one id per word, the same word the same id wherever it stands.
  assert.deepEqual(tokenizer.encode('кот').ids.slice(0, 3), [BOS, ru.ids[2], EOS]);
  assert.equal(tokenizer.encode('на крыше кот').ids[3], ru.ids[2]);
  assert.notDeepEqual(ru.ids, en.ids);
  // Whitespace around and between words does not change the ids.
  assert.deepEqual(tokenizer.encode('  красный   кот на крыше '), ru);
});

test('a prompt over 77 tokens is cut to 77 with </s> (2) last and reported as truncated', () => {
  const word = tokenizer.encode('кот').ids[1];
  const long = tokenizer.encode('кот '.repeat(100));
  assert.equal(long.truncated, true);
  assert.deepEqual(long.ids, [BOS, ...Array(75).fill(word), EOS]);
  assert.deepEqual(long.mask, Array(77).fill(1));
  // Exactly 77 tokens (75 words) fit; 76 words do not.
  const fits = tokenizer.encode('cat '.repeat(75));
  assert.equal(fits.truncated, false);
  assert.equal(fits.ids.at(-1), EOS);
  assert.ok(!fits.mask.includes(0));
  const over = tokenizer.encode('cat '.repeat(76));
  assert.equal(over.truncated, true);
  assert.equal(over.ids.at(-1), EOS);
  assert.equal(over.ids.length, 77);
});

test('encoding is pure: the same text gives the same ids, and calls do not share arrays', () => {
  const a = tokenizer.encode('a red cat');
  a.ids[1] = -1;
  a.mask[1] = -1;
  const b = tokenizer.encode('a red cat');
  assert.notEqual(b.ids[1], -1);
  assert.notEqual(b.mask[1], -1);
  assert.deepEqual(b, tokenizer.encode('a red cat'));
});

test('a missing or corrupt tokenizer.json is a ModelLoadError naming it; tokenizer_config.json is optional', async () => {
  const broken = join(dir, 'broken');
  await assert.rejects(loadXlmrTokenizer(dir, 'broken'), (error: unknown) => {
    assert.ok(error instanceof ModelLoadError, String(error));
    assert.deepEqual([error.code, error.file], ['model_missing_file', 'broken/tokenizer.json']);
    assert.match(error.message, /^broken\/tokenizer\.json: file does not exist/);
    return true;
  });
  await mkdir(broken);
  await writeFile(join(broken, 'tokenizer.json'), '{ "model": ');
  await assert.rejects(loadXlmrTokenizer(dir, 'broken'), (error: unknown) => {
    assert.ok(error instanceof ModelLoadError, String(error));
    assert.deepEqual([error.code, error.file], ['model_corrupt', 'broken/tokenizer.json']);
    return true;
  });
  // Without tokenizer_config.json the ids are unchanged (the specials come from tokenizer.json).
  await copyFile(join(dir, 'tokenizer/tokenizer.json'), join(broken, 'tokenizer.json'));
  const bare = await loadXlmrTokenizer(dir, 'broken');
  assert.deepEqual(bare.encode('красный кот на крыше'), tokenizer.encode('красный кот на крыше'));
});
