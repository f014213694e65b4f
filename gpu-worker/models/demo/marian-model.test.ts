import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { AutoTokenizer, env, LogLevel } from '@huggingface/transformers';
import ort from 'onnxruntime-node';
import { MARIAN_FILES } from '../marian-layout.ts';
import { cacheNames, DEMO_MARIAN, ensureDemoTranslator, writeDemoTranslator } from './marian-model.ts';

let root: string;
let dir: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'easel-marian-'));
  dir = join(root, 'demo');
  await writeDemoTranslator(dir);
});

after(() => rm(root, { recursive: true, force: true }));

async function readJson(file: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(dir, file), 'utf8'));
}

async function folderFiles(folder: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const entry of await readdir(folder, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    files.set(path.slice(folder.length + 1), await readFile(path));
  }
  return files;
}

const cacheInputs = (layers: number) =>
  Array.from({ length: layers }, (_, i) => {
    const n = cacheNames(i);
    return [n.pastDecoderKey, n.pastDecoderValue, n.pastEncoderKey, n.pastEncoderValue];
  }).flat();
const cacheOutputs = (layers: number) =>
  Array.from({ length: layers }, (_, i) => {
    const n = cacheNames(i);
    return [n.presentDecoderKey, n.presentDecoderValue, n.presentEncoderKey, n.presentEncoderValue];
  }).flat();

test('writes the transformers.js Marian layout, small and byte-identical on every write', async () => {
  const files = await folderFiles(dir);
  assert.deepEqual([...files.keys()].sort(), Object.values(MARIAN_FILES).sort());
  const total = [...files.values()].reduce((sum, bytes) => sum + bytes.length, 0);
  assert.ok(total < 1024 * 1024, `demo translator is ${total} bytes`);

  const again = join(root, 'again');
  await writeDemoTranslator(again);
  const second = await folderFiles(again);
  for (const [file, bytes] of files) assert.ok(bytes.equals(second.get(file) as Buffer), `${file} differs`);
});

test('config, generation config and tokenizer agree on the special token ids', async () => {
  const config = await readJson(MARIAN_FILES.config);
  const generation = await readJson(MARIAN_FILES.generationConfig);
  const tokenizer = await readJson(MARIAN_FILES.tokenizer);
  const tokenizerConfig = await readJson(MARIAN_FILES.tokenizerConfig);
  const vocab = (tokenizer.model as { vocab: [string, number][] }).vocab;
  const id = (piece: string) => vocab.findIndex(([p]) => p === piece);

  assert.equal(config.model_type, 'marian');
  assert.equal(config.is_encoder_decoder, true);
  assert.equal(config.vocab_size, vocab.length);
  assert.equal(config.d_model, DEMO_MARIAN.dModel);
  assert.equal(config.decoder_layers, DEMO_MARIAN.decoderLayers);
  assert.equal(config.eos_token_id, id('</s>'));
  assert.equal(config.forced_eos_token_id, id('</s>'));
  assert.equal(config.pad_token_id, id('<pad>'));
  assert.equal(config.decoder_start_token_id, id('<pad>'));
  assert.equal(id('<pad>'), vocab.length - 1);
  assert.deepEqual(config.bad_words_ids, [[id('<pad>')]]);
  assert.equal(generation.decoder_start_token_id, config.decoder_start_token_id);
  assert.equal(tokenizerConfig.tokenizer_class, 'MarianTokenizer');
  assert.equal((tokenizer.model as { type: string }).type, 'Unigram');
  assert.equal((tokenizer.pre_tokenizer as { type: string }).type, 'Metaspace');
  assert.ok(vocab.length > 300, `vocabulary has ${vocab.length} pieces`);
});

test('Russian text tokenizes to whole-word pieces followed by </s>', async () => {
  env.allowRemoteModels = false;
  env.logLevel = LogLevel.ERROR;
  const tokenizer = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  assert.deepEqual(tokenizer.tokenize('красный кот на крыше'), ['▁красный', '▁кот', '▁на', '▁крыше']);
  const ids = tokenizer.encode('красный кот на крыше');
  assert.equal(ids.length, 5);
  assert.equal(ids.at(-1), 0);
  assert.ok(!ids.includes(1), 'no <unk>');
  // An unknown word still splits into known pieces rather than <unk>.
  assert.ok(!tokenizer.encode('прогрев').includes(1));
});

test('encoder and merged decoder load in ONNX Runtime with the optimum input/output names', async () => {
  const encoder = await ort.InferenceSession.create(join(dir, MARIAN_FILES.encoder));
  const decoder = await ort.InferenceSession.create(join(dir, MARIAN_FILES.decoder));
  try {
    assert.deepEqual(encoder.inputNames, ['input_ids', 'attention_mask']);
    assert.deepEqual(encoder.outputNames, ['last_hidden_state']);
    const layers = DEMO_MARIAN.decoderLayers;
    assert.deepEqual(decoder.inputNames, [
      'encoder_attention_mask',
      'input_ids',
      'encoder_hidden_states',
      ...cacheInputs(layers),
      'use_cache_branch',
    ]);
    assert.deepEqual(decoder.outputNames, ['logits', ...cacheOutputs(layers)]);
    const meta = new Map(decoder.inputMetadata.map((m) => [m.name, m]));
    const useCache = meta.get('use_cache_branch');
    assert.ok(useCache?.isTensor);
    assert.equal(useCache.type, 'bool');
    const pastKey = meta.get('past_key_values.0.decoder.key');
    assert.ok(pastKey?.isTensor);
    assert.deepEqual(pastKey.shape, [
      'batch_size',
      DEMO_MARIAN.heads,
      'past_decoder_sequence_length',
      DEMO_MARIAN.dModel / DEMO_MARIAN.heads,
    ]);
  } finally {
    await Promise.all([encoder.release(), decoder.release()]);
  }
});

test('the cached decoder step gives the same logits as running the whole prefix', async () => {
  const encoder = await ort.InferenceSession.create(join(dir, MARIAN_FILES.encoder));
  const decoder = await ort.InferenceSession.create(join(dir, MARIAN_FILES.decoder));
  try {
    const config = await readJson(MARIAN_FILES.config);
    const start = BigInt(config.decoder_start_token_id as number);
    const vocabSize = config.vocab_size as number;
    const heads = DEMO_MARIAN.heads;
    const headDim = DEMO_MARIAN.dModel / heads;
    const ids = (values: bigint[]) => new ort.Tensor('int64', BigInt64Array.from(values), [1, values.length]);
    const sourceIds = [10n, 20n, 30n, 0n];
    const mask = ids(sourceIds.map(() => 1n));
    const { last_hidden_state: states } = await encoder.run({
      input_ids: ids(sourceIds),
      attention_mask: mask,
    });
    assert.deepEqual(states.dims, [1, sourceIds.length, DEMO_MARIAN.dModel]);

    const emptyCache = Object.fromEntries(
      cacheInputs(DEMO_MARIAN.decoderLayers).map((name) => [
        name,
        new ort.Tensor('float32', new Float32Array(0), [1, heads, 0, headDim]),
      ]),
    );
    const run = (inputIds: ort.Tensor, cache: Record<string, ort.Tensor>, useCache: boolean) =>
      decoder.run({
        encoder_attention_mask: mask,
        input_ids: inputIds,
        encoder_hidden_states: states,
        ...cache,
        use_cache_branch: new ort.Tensor('bool', [useCache], [1]),
      });

    const first = await run(ids([start]), emptyCache, false);
    assert.deepEqual(first.logits.dims, [1, 1, vocabSize]);
    assert.deepEqual(first['present.0.encoder.key'].dims, [1, heads, sourceIds.length, headDim]);
    const cache = Object.fromEntries(
      Object.entries(first)
        .filter(([name]) => name.startsWith('present.'))
        .map(([name, value]) => [name.replace('present.', 'past_key_values.'), value]),
    );
    const stepped = await run(ids([42n]), cache, true);
    assert.deepEqual(stepped['present.0.decoder.key'].dims, [1, heads, 2, headDim]);
    const whole = await run(ids([start, 42n]), emptyCache, false);
    assert.deepEqual(whole.logits.dims, [1, 2, vocabSize]);

    const cached = stepped.logits.data as Float32Array;
    const full = (whole.logits.data as Float32Array).subarray(vocabSize);
    let maxDiff = 0;
    for (let i = 0; i < vocabSize; i++) maxDiff = Math.max(maxDiff, Math.abs(cached[i] - full[i]));
    assert.ok(maxDiff < 1e-3, `cached and uncached logits differ by ${maxDiff}`);
    // The first position of the uncached run must not see the second token (causal mask).
    const firstLogits = first.logits.data as Float32Array;
    const wholeFirst = (whole.logits.data as Float32Array).subarray(0, vocabSize);
    for (let i = 0; i < vocabSize; i += 37) assert.ok(Math.abs(firstLogits[i] - wholeFirst[i]) < 1e-3);
  } finally {
    await Promise.all([encoder.release(), decoder.release()]);
  }
});

test('ensureDemoTranslator writes once, atomically, and leaves an existing model alone', async () => {
  const target = join(root, 'nested', 'demo-translator');
  const [a, b] = await Promise.all([ensureDemoTranslator(target), ensureDemoTranslator(target)]);
  assert.equal(a, target);
  assert.equal(b, target);
  const siblings = await readdir(join(root, 'nested'));
  assert.deepEqual(siblings, ['demo-translator'], 'no staging folders left behind');
  const before = (await stat(join(target, MARIAN_FILES.decoder))).mtimeMs;
  assert.equal(await ensureDemoTranslator(target), target);
  assert.equal((await stat(join(target, MARIAN_FILES.decoder))).mtimeMs, before);
});
