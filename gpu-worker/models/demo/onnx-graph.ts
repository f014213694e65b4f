// A minimal ONNX graph builder over onnx-proto, for the tiny models the project builds itself
// (demo models, tests), and the seeded weights they are filled with. It emits IR 8 / opset 17,
// which ONNX Runtime 1.30 loads.
// Traps it encodes: from opset 13 ReduceSum/Unsqueeze/Squeeze take `axes` as an input (use
// `ints`), Resize takes an empty '' roi input, and weights go in rawData as little-endian float32.

import type { onnx as OnnxTypes } from 'onnx-proto';
import p from 'onnx-proto';
import { fillGaussian } from '../random.ts';

const { onnx } = p;

/**
 * Seeded Gaussian weights × scale. Each tensor has its own seed, so changing one graph (or adding
 * a tensor) leaves every other tensor, and so every other file, byte-for-byte the same.
 */
export function gaussian(count: number, seed: number, scale: number): Float32Array {
  const values = new Float32Array(count);
  fillGaussian(values, seed);
  for (let i = 0; i < count; i++) values[i] *= scale;
  return values;
}

/** A constant tensor's values (LayerNorm's unit scale and zero bias, one-hot rows). */
export function filled(count: number, value: number): Float32Array {
  return new Float32Array(count).fill(value);
}

export const OPSET = 17;
export const IR_VERSION = 8;

export type ElementType = 'float32' | 'int32' | 'int64' | 'bool';
/** A dimension: a fixed size or a symbolic name (a dynamic axis). */
export type Dim = number | string;
export type Attribute =
  | { int: number }
  | { ints: number[] }
  | { float: number }
  | { string: string }
  /** A subgraph, e.g. the `then_branch`/`else_branch` of an `If` node (from `GraphBuilder.subgraph`). */
  | { graph: OnnxTypes.IGraphProto };

const elementTypes: Record<ElementType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
};

function valueInfo(name: string, type: ElementType, dims: Dim[]): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: elementTypes[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, value: Attribute): OnnxTypes.IAttributeProto {
  const { AttributeType } = onnx.AttributeProto;
  if ('int' in value) return { name, type: AttributeType.INT, i: value.int };
  if ('ints' in value) return { name, type: AttributeType.INTS, ints: value.ints };
  if ('float' in value) return { name, type: AttributeType.FLOAT, f: value.float };
  if ('graph' in value) return { name, type: AttributeType.GRAPH, g: value.graph };
  return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value.string) };
}

function littleEndianFloat32(values: Float32Array): Uint8Array {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true);
  return bytes;
}

function littleEndianInt64(values: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(values.length * 8);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) view.setBigInt64(i * 8, BigInt(values[i]), true);
  return bytes;
}

export interface GraphBuilder {
  input(name: string, type: ElementType, dims: Dim[]): string;
  /** Marks an existing value as a graph output (rename with `op('Identity', ...)` first if needed). */
  output(name: string, type: ElementType, dims: Dim[]): void;
  /** A float32 initialiser; `data.length` must equal the product of `dims`. */
  weight(name: string, dims: number[], data: Float32Array): string;
  /** A 1-D int64 initialiser (axes, shapes, slice bounds). */
  ints(values: readonly number[]): string;
  /** A float32 scalar-like constant of shape [1] (broadcasts). */
  scalar(value: number): string;
  /** Adds a node and returns the name of its (single) output. */
  op(opType: string, inputs: string[], attributes?: Record<string, Attribute>, outputName?: string): string;
  /** Adds a node with several named outputs (e.g. `If`, `Split`) and returns those names. */
  node(opType: string, inputs: string[], outputs: string[], attributes?: Record<string, Attribute>): string[];
  /**
   * A builder for a subgraph (an `If` branch). It shares this builder's name counter, because ONNX
   * requires value names to be unique across a graph and its subgraphs; a subgraph may read any
   * value of the enclosing graph by name. Finish it with `toGraph()` and pass it as `{ graph }`.
   */
  subgraph(name: string): GraphBuilder;
  /** The GraphProto built so far (for a subgraph attribute). */
  toGraph(): OnnxTypes.IGraphProto;
  /** Serialises the model (ModelProto bytes). */
  encode(): Uint8Array;
}

export function createGraph(name: string): GraphBuilder {
  let counter = 0;
  return buildGraph(name, (prefix) => `${prefix}_${counter++}`);
}

function buildGraph(name: string, fresh: (prefix: string) => string): GraphBuilder {
  const nodes: OnnxTypes.INodeProto[] = [];
  const initializer: OnnxTypes.ITensorProto[] = [];
  const inputs: OnnxTypes.IValueInfoProto[] = [];
  const outputs: OnnxTypes.IValueInfoProto[] = [];
  const toGraph = (): OnnxTypes.IGraphProto => ({
    name,
    node: nodes,
    initializer,
    input: inputs,
    output: outputs,
  });

  return {
    input(inputName, type, dims) {
      inputs.push(valueInfo(inputName, type, dims));
      return inputName;
    },
    output(outputName, type, dims) {
      outputs.push(valueInfo(outputName, type, dims));
    },
    weight(weightName, dims, data) {
      const expected = dims.reduce((a, b) => a * b, 1);
      if (data.length !== expected) {
        throw new Error(`weight ${weightName}: ${data.length} values for shape [${dims}] (${expected})`);
      }
      initializer.push({
        name: weightName,
        dims,
        dataType: onnx.TensorProto.DataType.FLOAT,
        rawData: littleEndianFloat32(data),
      });
      return weightName;
    },
    ints(values) {
      const constName = fresh('ints');
      initializer.push({
        name: constName,
        dims: [values.length],
        dataType: onnx.TensorProto.DataType.INT64,
        rawData: littleEndianInt64(values),
      });
      return constName;
    },
    scalar(value) {
      const constName = fresh('scalar');
      initializer.push({
        name: constName,
        dims: [1],
        dataType: onnx.TensorProto.DataType.FLOAT,
        rawData: littleEndianFloat32(Float32Array.of(value)),
      });
      return constName;
    },
    op(opType, nodeInputs, attributes = {}, outputName) {
      const out = outputName ?? fresh(opType.toLowerCase());
      nodes.push({
        name: fresh(`${opType}_node`),
        opType,
        input: nodeInputs,
        output: [out],
        attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)),
      });
      return out;
    },
    node(opType, nodeInputs, nodeOutputs, attributes = {}) {
      nodes.push({
        name: fresh(`${opType}_node`),
        opType,
        input: nodeInputs,
        output: nodeOutputs,
        attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)),
      });
      return nodeOutputs;
    },
    subgraph(subgraphName) {
      return buildGraph(subgraphName, fresh);
    },
    toGraph,
    encode() {
      const model = onnx.ModelProto.create({
        irVersion: IR_VERSION,
        opsetImport: [{ domain: '', version: OPSET }],
        producerName: 'easel',
        graph: toGraph(),
      });
      return onnx.ModelProto.encode(model).finish();
    },
  };
}
