/**
 * Deterministic ONNX models for tests and benchmarks: a tiny affine model whose outputs are easy to check by
 * hand, and a GEMM-heavy MLP (MatMul + Add + Relu layers) with seeded weights.
 */
import { seededRandom } from '@shoal/core';
import { encodeModel, encodeModelBytes, type GraphSpec, type Initializer } from './onnx-writer.ts';

/** Weights of the tiny model: y = relu(x · TINY_W + TINY_B), with x [batch, 4]; also sum = ReduceSum(y, axis 1). */
export const TINY_W: readonly number[][] = [
  [1, 0, 0, 0],
  [0, 2, 0, 0],
  [0, 0, 3, 0],
  [1, 1, 1, -1],
];
export const TINY_B: readonly number[] = [0.5, 0, -1, 0];

/** What the tiny model computes, in plain JS, for checking results: returns y and sum per row. */
export function tinyReference(x: ArrayLike<number>): { y: Float32Array; sum: Float32Array } {
  const rows = x.length / 4;
  const y = new Float32Array(rows * 4);
  const sum = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < 4; j++) {
      let acc = TINY_B[j] ?? 0;
      for (let i = 0; i < 4; i++) acc += (x[r * 4 + i] ?? 0) * (TINY_W[i]?.[j] ?? 0);
      const v = Math.fround(Math.max(0, acc));
      y[r * 4 + j] = v;
      sum[r] = (sum[r] ?? 0) + v;
    }
  }
  return { y, sum };
}

/** The tiny model: input "x" float32 [batch, 4]; outputs "y" float32 [batch, 4] and "sum" float32 [batch]. */
export function buildTinyModel(): Uint8Array {
  const spec: GraphSpec = {
    name: 'tiny',
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', 4] }],
    outputs: [
      { name: 'y', type: 'float32', shape: ['batch', 4] },
      { name: 'sum', type: 'float32', shape: ['batch'] },
    ],
    initializers: [
      { name: 'W', dims: [4, 4], data: Float32Array.from(TINY_W.flat()) },
      { name: 'B', dims: [4], data: Float32Array.from(TINY_B) },
    ],
    nodes: [
      { opType: 'MatMul', inputs: ['x', 'W'], outputs: ['xw'] },
      { opType: 'Add', inputs: ['xw', 'B'], outputs: ['pre'] },
      { opType: 'Relu', inputs: ['pre'], outputs: ['y'] },
      // ReduceSum with axes as an attribute is opset <= 12; keep opset 17 and use keepdims=0 with an axes input.
      { opType: 'ReduceSum', inputs: ['y', 'axes'], outputs: ['sum'], attributes: { keepdims: 0 }, intAttributes: ['keepdims'] },
    ],
  };
  return encodeModelBytes(withAxesConstant(spec));
}

function withAxesConstant(spec: GraphSpec): GraphSpec {
  // ReduceSum's axes input must be int64; the writer only stores float initializers, so cast a float constant.
  return {
    ...spec,
    initializers: [...(spec.initializers ?? []), { name: 'axes_f', dims: [1], data: Float32Array.of(1) }],
    nodes: [{ opType: 'Cast', inputs: ['axes_f'], outputs: ['axes'], attributes: { to: 7 }, intAttributes: ['to'] }, ...spec.nodes],
  };
}

export interface MlpOptions {
  /** Width of the input and of every hidden layer. @default 2048 */
  hidden?: number;
  /** Number of MatMul + Add + Relu layers. @default 4 */
  layers?: number;
  /** Seed of the weight generator; the same seed gives byte-identical models. @default 1 */
  seed?: number;
}

/**
 * The MLP: input "x" float32 [batch, hidden] -> output "y" float32 [batch, hidden], dynamic batch. Weights are
 * uniform in ±sqrt(3/hidden) so activations keep roughly unit scale through the layers. Returned as chunks
 * (the 2048-wide model is 64 MiB of weights; write the chunks in order rather than concatenating them).
 */
export function buildMlpModel(opts: MlpOptions = {}): Uint8Array[] {
  const hidden = opts.hidden ?? 2048;
  const layers = opts.layers ?? 4;
  const next = seededRandom(opts.seed ?? 1);
  const scale = Math.sqrt(3 / hidden);
  const initializers: Initializer[] = [];
  const nodes: GraphSpec['nodes'] = [];
  let prev = 'x';
  for (let l = 0; l < layers; l++) {
    const w = new Float32Array(hidden * hidden);
    for (let i = 0; i < w.length; i++) w[i] = (next() * 2 - 1) * scale;
    const b = new Float32Array(hidden);
    for (let i = 0; i < b.length; i++) b[i] = (next() * 2 - 1) * 0.01;
    initializers.push({ name: `w${l}`, dims: [hidden, hidden], data: w }, { name: `b${l}`, dims: [hidden], data: b });
    const out = l === layers - 1 ? 'y' : `h${l}`;
    nodes.push(
      { opType: 'MatMul', inputs: [prev, `w${l}`], outputs: [`mm${l}`] },
      { opType: 'Add', inputs: [`mm${l}`, `b${l}`], outputs: [`pre${l}`] },
      { opType: 'Relu', inputs: [`pre${l}`], outputs: [out] },
    );
    prev = out;
  }
  return encodeModel({
    name: `mlp_${layers}x${hidden}`,
    inputs: [{ name: 'x', type: 'float32', shape: ['batch', hidden] }],
    outputs: [{ name: 'y', type: 'float32', shape: ['batch', hidden] }],
    initializers,
    nodes,
  });
}

/** Element types the identity model passes through: every type onnxruntime-node takes as a tensor. */
export const IDENTITY_TYPES = ['bool', 'uint8', 'uint16', 'uint32', 'uint64', 'int8', 'int16', 'int32', 'int64', 'float16', 'float32', 'float64', 'string'] as const;

/**
 * One Identity per element type: input "in_<type>" [batch, width] (width fixed, or dynamic when a name) -> output "out_<type>" [batch, width]. Checks
 * that every datatype survives a codec and the thread hop unchanged.
 */
export function buildIdentityModel(width: number | string = 2): Uint8Array {
  return encodeModelBytes({
    name: 'identity_all_types',
    inputs: IDENTITY_TYPES.map((t) => ({ name: `in_${t}`, type: t, shape: ['batch', width] })),
    outputs: IDENTITY_TYPES.map((t) => ({ name: `out_${t}`, type: t, shape: ['batch', width] })),
    nodes: IDENTITY_TYPES.map((t) => ({ opType: 'Identity', inputs: [`in_${t}`], outputs: [`out_${t}`] })),
  });
}
