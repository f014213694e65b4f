import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type ClipTokenizer, clipTokenizerJson, loadClipTokenizer, parseMerges } from './clip-tokenizer.ts';
import { ModelLoadError } from './model-errors.ts';

const assets = new URL('./assets/clip-tokenizer/', import.meta.url).pathname;
const BOS = 49406;
const EOS = 49407;
let tokenizer: ClipTokenizer;

before(async () => {
  tokenizer = await loadClipTokenizer(assets);
});

test('encodes the README reference prompt to the ids CLIP produces, padded with EOS to 77', () => {
  const { ids, truncated } = tokenizer.encode('a photo of a cat');
  assert.deepEqual(ids.slice(0, 7), [BOS, 320, 1125, 539, 320, 2368, EOS]);
  assert.equal(ids.length, 77);
  assert.ok(ids.slice(7).every((id) => id === EOS));
  assert.equal(truncated, false);
  assert.equal(tokenizer.maxLength, 77);
});

test('lower-cases, collapses whitespace and splits punctuation and contractions like CLIP', () => {
  const plain = tokenizer.encode('a photo of a cat').ids;
  assert.deepEqual(tokenizer.encode('  A \n PHOTO\tof a   Cat ').ids, plain);
  // "!!</w>" is its own vocabulary entry (748); "'s</w>" is 568 and "it</w>" is 585.
  assert.deepEqual(tokenizer.encode('cat!!').ids.slice(0, 4), [BOS, 2368, 748, EOS]);
  assert.deepEqual(tokenizer.encode("it's").ids.slice(0, 4), [BOS, 585, 568, EOS]);
});

test('an empty prompt is BOS, EOS and padding (the unconditional input)', () => {
  const { ids } = tokenizer.encode('');
  assert.deepEqual(ids.slice(0, 3), [BOS, EOS, EOS]);
  assert.equal(ids.length, 77);
});

test('a prompt longer than 77 tokens is truncated with EOS kept in the last position', () => {
  const { ids, truncated } = tokenizer.encode('cat '.repeat(100));
  assert.equal(truncated, true);
  assert.equal(ids.length, 77);
  assert.equal(ids[0], BOS);
  assert.equal(ids[76], EOS);
  assert.ok(ids.slice(1, 76).every((id) => id === 2368));
  // 75 words fit exactly: no truncation.
  assert.equal(tokenizer.encode('cat '.repeat(75)).truncated, false);
  assert.equal(tokenizer.encode('cat '.repeat(76)).truncated, true);
});

test('a folder with a real tokenizer.json uses it instead of vocab.json + merges.txt', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'easel-tokenizer-'));
  after(() => rm(dir, { recursive: true, force: true }));
  // A one-merge vocabulary proves the file was read: "ab" only exists through tokenizer.json.
  const vocab = { a: 0, b: 1, 'b</w>': 2, 'ab</w>': 3, '<|startoftext|>': 4, '<|endoftext|>': 5 };
  const config = { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', model_max_length: 8 };
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(clipTokenizerJson(vocab, ['a b</w>'], config)));
  await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  const small = await loadClipTokenizer(dir);
  assert.deepEqual(small.encode('ab').ids, [4, 3, 5, 5, 5, 5, 5, 5]);
});

test('a missing merges.txt is a ModelLoadError naming the file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'easel-tokenizer-'));
  after(() => rm(dir, { recursive: true, force: true }));
  await copyFile(join(assets, 'vocab.json'), join(dir, 'vocab.json'));
  await assert.rejects(loadClipTokenizer(dir), (error: unknown) => {
    assert.ok(error instanceof ModelLoadError);
    assert.equal(error.code, 'model_missing_file');
    assert.match(error.message, /merges\.txt: file does not exist/);
    return true;
  });
});

test('parseMerges skips the version header and blank lines', () => {
  assert.deepEqual(parseMerges('#version: 0.2\ni n\r\nt h\n\n'), ['i n', 't h']);
});
