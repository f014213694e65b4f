// Runs one ONNX model with onnxruntime-node (the runtime the Easel worker uses).
// Helper for infra/export/check_wrappers.py, which has torch + onnx but no Python onnxruntime.
//
//   node infra/export/ort_run.mjs request.json
//
// request.json: {"model": "/abs/model.onnx", "outDir": "/abs/dir", "outputs": ["name", ...],
//                "inputs": [{"name", "dtype": "float32"|"int64"|"bool", "shape": [..], "file": "/abs/x.bin"}]}
// Each input file holds the raw little-endian tensor data (bool as one byte per element).
// Writes <outDir>/<output>.bin (float32) and prints {"outputs": {name: {shape, file}}} on stdout.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';

const req = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function toTensor({ dtype, shape, file }) {
  const buf = readFileSync(file);
  const bytes = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
  switch (dtype) {
    case 'float32':
      return new ort.Tensor('float32', new Float32Array(bytes), shape);
    case 'int64':
      return new ort.Tensor('int64', new BigInt64Array(bytes), shape);
    case 'bool':
      return new ort.Tensor('bool', new Uint8Array(bytes), shape);
    default:
      throw new Error(`unsupported dtype ${dtype}`);
  }
}

// Load by path so external data (weights.pb next to model.onnx) is found.
const session = await ort.InferenceSession.create(req.model, { executionProviders: ['cpu'] });
const feeds = {};
for (const input of req.inputs) feeds[input.name] = toTensor(input);
const results = await session.run(feeds, req.outputs);
const outputs = {};
for (const name of req.outputs) {
  const t = results[name];
  if (t.type !== 'float32') throw new Error(`output ${name} is ${t.type}, expected float32`);
  const file = join(req.outDir, `${name}.bin`);
  writeFileSync(file, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  outputs[name] = { shape: t.dims, file };
}
process.stdout.write(JSON.stringify({ outputs }));
