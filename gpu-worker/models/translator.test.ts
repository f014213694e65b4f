import assert from 'node:assert/strict';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { writeDemoTranslator } from './demo/marian-model.ts';
import { MARIAN_FILES } from './marian-layout.ts';
import { ModelLoadError } from './model-errors.ts';
import {
  loadTranslator,
  needsTranslation,
  type TranslationMode,
  type Translator,
  translatePrompt,
} from './translator.ts';

const CYRILLIC = /\p{Script=Cyrillic}/u;
const PROMPT = 'красный кот на крыше';

let root: string;
let demoDir: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'easel-translator-'));
  demoDir = join(root, 'demo');
  await writeDemoTranslator(demoDir);
});

after(() => rm(root, { recursive: true, force: true }));

/** A translator that records its calls, for checking when the model is (not) used. */
function recordingTranslator(): Translator & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    info: { dir: '/nowhere' },
    async translate(text) {
      calls.push(text);
      return `EN(${text})`;
    },
    async release() {},
  };
}

test('the demo translator turns Russian into Latin-script text, deterministically across calls and loads', async () => {
  const first = await loadTranslator(demoDir);
  let again: string;
  let once: string;
  try {
    assert.equal(first.info.dir, demoDir);
    once = await first.translate(PROMPT);
    assert.ok(once.trim().length > 0, 'non-empty');
    assert.doesNotMatch(once, CYRILLIC);
    assert.match(once, /^[a-z]+( [a-z]+)*$/i, `Latin words: ${JSON.stringify(once)}`);
    assert.equal(await first.translate(PROMPT), once);
    // Concurrent calls (prompt and negative prompt arrive together) give the same answers.
    const [a, b] = await Promise.all([first.translate(PROMPT), first.translate('кот')]);
    assert.equal(a, once);
    assert.notEqual(b, once);
  } finally {
    await first.release();
  }
  const second = await loadTranslator(demoDir);
  try {
    again = await second.translate(PROMPT);
  } finally {
    await second.release();
  }
  assert.equal(again, once);
});

test('a multi-line prompt is translated line by line, keeping blank lines', async () => {
  const translator = await loadTranslator(demoDir);
  try {
    const out = await translator.translate('красный кот\n\nна крыше');
    const lines = out.split('\n');
    assert.equal(lines.length, 3);
    assert.equal(lines[1], '');
    assert.equal(lines[0], await translator.translate('красный кот'));
    assert.equal(lines[2], await translator.translate('на крыше'));
    assert.doesNotMatch(out, CYRILLIC);
  } finally {
    await translator.release();
  }
});

test('a released translator refuses to translate', async () => {
  const translator = await loadTranslator(demoDir);
  await translator.release();
  await translator.release();
  await assert.rejects(translator.translate(PROMPT), /released/);
});

test('needsTranslation: auto wants Cyrillic, always wants any text, off never', () => {
  const cases: [string, Record<TranslationMode, boolean>][] = [
    [PROMPT, { auto: true, always: true, off: false }],
    ['a red cat on a roof', { auto: false, always: true, off: false }],
    ['a red кот on a roof', { auto: true, always: true, off: false }],
    ['Ёлка', { auto: true, always: true, off: false }],
    ['', { auto: false, always: false, off: false }],
    ['   \n', { auto: false, always: false, off: false }],
    ['42, 3.14 — !?', { auto: false, always: true, off: false }],
  ];
  for (const [text, expected] of cases) {
    for (const mode of ['auto', 'always', 'off'] as const) {
      assert.equal(needsTranslation(text, mode), expected[mode], `${JSON.stringify(text)} in ${mode}`);
    }
  }
});

test('translatePrompt passes text through unless the mode asks for translation', async () => {
  const translator = recordingTranslator();
  assert.deepEqual(await translatePrompt(translator, 'a red cat', 'auto'), {
    promptEn: 'a red cat',
    translated: false,
    ms: 0,
  });
  assert.deepEqual(await translatePrompt(translator, PROMPT, 'off'), {
    promptEn: PROMPT,
    translated: false,
    ms: 0,
  });
  assert.deepEqual(await translatePrompt(translator, '', 'always'), {
    promptEn: '',
    translated: false,
    ms: 0,
  });
  assert.deepEqual(translator.calls, [], 'the model was not called');

  const russian = await translatePrompt(translator, PROMPT, 'auto');
  assert.equal(russian.promptEn, `EN(${PROMPT})`);
  assert.equal(russian.translated, true);
  assert.ok(russian.ms >= 0);
  assert.equal((await translatePrompt(translator, 'a red cat', 'always')).promptEn, 'EN(a red cat)');
  assert.deepEqual(translator.calls, [PROMPT, 'a red cat']);

  // No translator loaded: the prompt goes on untranslated.
  assert.deepEqual(await translatePrompt(undefined, PROMPT, 'always'), {
    promptEn: PROMPT,
    translated: false,
    ms: 0,
  });
});

async function copyWithout(file: string): Promise<string> {
  const copy = await mkdtemp(join(root, 'without-'));
  await cp(demoDir, copy, { recursive: true });
  await rm(join(copy, file));
  return copy;
}

for (const file of [
  MARIAN_FILES.decoder,
  MARIAN_FILES.tokenizer,
  MARIAN_FILES.encoder,
  MARIAN_FILES.config,
]) {
  test(`a folder without ${file} fails with ModelLoadError naming it`, async () => {
    const dir = await copyWithout(file);
    await assert.rejects(loadTranslator(dir), (error: unknown) => {
      assert.ok(error instanceof ModelLoadError, String(error));
      assert.equal(error.code, 'model_missing_file');
      assert.equal(error.file, file);
      assert.equal(error.dir, dir);
      assert.match(error.message, new RegExp(file.replace('.', '\\.')));
      return true;
    });
  });
}

test('a missing folder, a non-Marian config and a corrupt decoder fail with ModelLoadError', async () => {
  await assert.rejects(loadTranslator(join(root, 'no-such-folder')), (error: unknown) => {
    assert.ok(error instanceof ModelLoadError);
    assert.equal(error.code, 'model_missing_file');
    assert.equal(error.file, '');
    assert.match(error.message, /does not exist/);
    return true;
  });

  const wrongType = await mkdtemp(join(root, 't5-'));
  await cp(demoDir, wrongType, { recursive: true });
  await writeFile(join(wrongType, MARIAN_FILES.config), JSON.stringify({ model_type: 't5' }));
  await assert.rejects(loadTranslator(wrongType), (error: unknown) => {
    assert.ok(error instanceof ModelLoadError);
    assert.equal(error.code, 'model_invalid');
    assert.equal(error.file, MARIAN_FILES.config);
    assert.match(error.message, /"t5"/);
    return true;
  });

  const corrupt = await mkdtemp(join(root, 'corrupt-'));
  await cp(demoDir, corrupt, { recursive: true });
  await writeFile(join(corrupt, MARIAN_FILES.decoder), 'not an onnx file');
  await assert.rejects(loadTranslator(corrupt), (error: unknown) => {
    assert.ok(error instanceof ModelLoadError, String(error));
    assert.equal(error.code, 'model_corrupt');
    assert.equal(error.file, MARIAN_FILES.decoder);
    return true;
  });
});
