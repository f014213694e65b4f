import assert from 'node:assert/strict';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { createGraph } from './onnx-graph.ts';

test('builds a graph ONNX Runtime runs: weights, int64 axes inputs, Resize with an empty roi, dynamic axes', async () => {
  const g = createGraph('check');
  const x = g.input('x', 'float32', ['batch', 2]);
  const shifted = g.op('Add', [x, g.weight('bias', [2], Float32Array.of(0.5, -1))]);
  const summed = g.op('ReduceSum', [shifted, g.ints([1])], { keepdims: { int: 1 } });
  const image = g.op('Unsqueeze', [summed, g.ints([2])]);
  g.op(
    'Resize',
    [image, '', g.weight('scales', [3], Float32Array.of(1, 1, 3))],
    { mode: { string: 'nearest' } },
    'y',
  );
  g.output('y', 'float32', ['batch', 1, 3]);

  const session = await ort.InferenceSession.create(g.encode());
  try {
    const { y } = await session.run({ x: new ort.Tensor('float32', Float32Array.of(1, 2, 10, 20), [2, 2]) });
    assert.deepEqual(y.dims, [2, 1, 3]);
    // (1 + 0.5) + (2 − 1) = 2.5; (10 + 0.5) + (20 − 1) = 29.5
    assert.deepEqual([...(y.data as Float32Array)], [2.5, 2.5, 2.5, 29.5, 29.5, 29.5]);
  } finally {
    await session.release();
  }
});

test('rejects a weight whose data does not match its shape', () => {
  assert.throws(
    () => createGraph('bad').weight('w', [2, 3], new Float32Array(5)),
    /5 values for shape \[2,3\]/,
  );
});
