import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ModelLoadError } from './model-errors.ts';
import { parsePythonJson, readModelJson, requireFile } from './model-files.ts';

test('config JSON with Python’s Infinity/NaN tokens parses; strings holding them are untouched', () => {
  assert.deepEqual(parsePythonJson('{"a": -Infinity, "b": [Infinity, NaN], "c": "NaN -Infinity \\" x"}'), {
    a: Number.NEGATIVE_INFINITY,
    b: [Number.POSITIVE_INFINITY, null],
    c: 'NaN -Infinity " x',
  });
  assert.throws(() => parsePythonJson('{"a": }'), SyntaxError);
});

test('a missing file names itself and the layout the caller expects; bad JSON is model_corrupt', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'easel-model-files-'));
  try {
    await assert.rejects(requireFile(dir, 'unet/model.onnx', 'the test layout'), (error: unknown) => {
      assert.ok(error instanceof ModelLoadError);
      assert.equal(error.code, 'model_missing_file');
      assert.equal(error.file, 'unet/model.onnx');
      assert.match(
        error.message,
        /^unet\/model\.onnx: file does not exist in .* \(expected the test layout\)$/,
      );
      return true;
    });
    await writeFile(join(dir, 'config.json'), '{ not json');
    await assert.rejects(readModelJson(dir, 'config.json'), { code: 'model_corrupt', file: 'config.json' });
    await assert.rejects(readModelJson(dir, 'absent.json'), { code: 'ENOENT' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
