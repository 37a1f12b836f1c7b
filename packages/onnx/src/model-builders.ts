/**
 * Deterministic ONNX models for tests and benchmarks: a tiny affine model whose outputs are easy to check by
 * hand, and a GEMM-heavy MLP (MatMul + Add + Relu layers) with seeded weights, in float32 or in a float16 or int8
 * variant made from the same weights.
 */
import { seededRandom } from '@shoal/core';
import { toHalf } from '@shoal/oip';
import { encodeModel, encodeModelBytes, type GraphSpec, type Initializer, type NodeSpec } from './onnx-writer.ts';

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
  // ReduceSum's axes are an int64 input from opset 13 on.
  return { ...spec, initializers: [...(spec.initializers ?? []), { name: 'axes', dims: [1], type: 'int64', data: BigInt64Array.of(1n) }] };
}

/**
 * How the MLP's weights are stored and multiplied (biases, Add and Relu stay float32 in every variant but fp16):
 *
 *   fp32   float32 MatMul.
 *   fp16   float16 weights and biases, a float16 graph between a Cast of the input and a Cast of the output back to
 *          float32. Half the file. It runs in float16 where the execution provider has float16 kernels (CUDA's
 *          does); onnxruntime's x86 CPU provider has none for MatMul, so it inserts Casts and folds the weights
 *          back to float32 at load: weight-only fp16, with fp32's memory and speed (bench/quantization shows which).
 *   int8   dynamic quantization, as onnxruntime's quantize_dynamic writes it: weights int8, symmetric, one scale
 *          per output column; each layer quantizes its input to uint8 at run time (DynamicQuantizeLinear, one
 *          scale per tensor), multiplies in integers (MatMulInteger) and rescales to float32 (Cast, Mul). ORT fuses
 *          the chain into one DynamicQuantizeMatMul per layer. A quarter of the file.
 */
export type MlpPrecision = 'fp32' | 'fp16' | 'int8';

export interface MlpOptions {
  /** Width of the input and of every hidden layer. @default 2048 */
  hidden?: number;
  /** Number of MatMul + Add + Relu layers. @default 4 */
  layers?: number;
  /** Seed of the weight generator; the same seed gives byte-identical models, and the same weights in every precision. @default 1 */
  seed?: number;
  /** How the weights are stored and multiplied; see MlpPrecision. Input and output are float32 in every variant. @default 'fp32' */
  precision?: MlpPrecision;
}

const CAST_TO = { float32: 1, float16: 10 } as const;
const cast = (input: string, output: string, to: keyof typeof CAST_TO): NodeSpec => ({ opType: 'Cast', inputs: [input], outputs: [output], attributes: { to: CAST_TO[to] }, intAttributes: ['to'] });

/** float32 -> float16 bits, round to nearest even. A plain loop: Uint16Array.from(w, toHalf) is 17x slower on 4M weights. */
function halves(w: Float32Array): Uint16Array {
  const h = new Uint16Array(w.length);
  for (let i = 0; i < w.length; i++) h[i] = toHalf(w[i]!);
  return h;
}

/** Symmetric int8 per output column of a [rows, cols] row-major matrix: q = round(w / scale), scale = max|w| / 127. */
function quantizeColumns(w: Float32Array, rows: number, cols: number): { q: Int8Array; scale: Float32Array } {
  const scale = new Float32Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) scale[c] = Math.max(scale[c]!, Math.abs(w[r * cols + c]!));
  for (let c = 0; c < cols; c++) scale[c] = scale[c]! === 0 ? 1 : scale[c]! / 127;
  const q = new Int8Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) q[r * cols + c] = Math.max(-127, Math.min(127, Math.round(w[r * cols + c]! / scale[c]!)));
  return { q, scale };
}

/** One layer's nodes and initializers: `input` times the weights plus the bias, then Relu into `output`. */
function mlpLayer(precision: MlpPrecision, l: number, input: string, output: string, w: Float32Array, b: Float32Array, hidden: number): { nodes: NodeSpec[]; initializers: Initializer[] } {
  const tail: NodeSpec[] = [{ opType: 'Add', inputs: [`mm${l}`, `b${l}`], outputs: [`pre${l}`] }, { opType: 'Relu', inputs: [`pre${l}`], outputs: [output] }];
  if (precision === 'fp32') {
    return { nodes: [{ opType: 'MatMul', inputs: [input, `w${l}`], outputs: [`mm${l}`] }, ...tail], initializers: [{ name: `w${l}`, dims: [hidden, hidden], data: w }, { name: `b${l}`, dims: [hidden], data: b }] };
  }
  if (precision === 'fp16') {
    return {
      nodes: [{ opType: 'MatMul', inputs: [input, `w${l}`], outputs: [`mm${l}`] }, ...tail],
      initializers: [{ name: `w${l}`, dims: [hidden, hidden], type: 'float16', data: halves(w) }, { name: `b${l}`, dims: [hidden], type: 'float16', data: halves(b) }],
    };
  }
  const { q, scale } = quantizeColumns(w, hidden, hidden);
  return {
    nodes: [
      { opType: 'DynamicQuantizeLinear', inputs: [input], outputs: [`xq${l}`, `xs${l}`, `xz${l}`] },
      { opType: 'Mul', inputs: [`xs${l}`, `ws${l}`], outputs: [`s${l}`] },
      { opType: 'MatMulInteger', inputs: [`xq${l}`, `wq${l}`, `xz${l}`, `wz${l}`], outputs: [`mi${l}`] },
      cast(`mi${l}`, `mf${l}`, 'float32'),
      { opType: 'Mul', inputs: [`mf${l}`, `s${l}`], outputs: [`mm${l}`] },
      ...tail,
    ],
    initializers: [
      { name: `wq${l}`, dims: [hidden, hidden], type: 'int8', data: q },
      { name: `ws${l}`, dims: [hidden], data: scale },
      { name: `wz${l}`, dims: [hidden], type: 'int8', data: new Int8Array(hidden) },
      { name: `b${l}`, dims: [hidden], data: b },
    ],
  };
}

/**
 * The MLP: input "x" float32 [batch, hidden] -> output "y" float32 [batch, hidden], dynamic batch. Weights are
 * uniform in ±sqrt(3/hidden) so activations keep roughly unit scale through the layers. Returned as chunks
 * (the 2048-wide float32 model is 64 MiB of weights; write the chunks in order rather than concatenating them).
 */
export function buildMlpModel(opts: MlpOptions = {}): Uint8Array[] {
  const hidden = opts.hidden ?? 2048;
  const layers = opts.layers ?? 4;
  const precision = opts.precision ?? 'fp32';
  if (!['fp32', 'fp16', 'int8'].includes(precision)) throw new RangeError(`precision must be fp32, fp16 or int8, got ${JSON.stringify(precision)}`);
  const next = seededRandom(opts.seed ?? 1);
  const scale = Math.sqrt(3 / hidden);
  const initializers: Initializer[] = [];
  const nodes: NodeSpec[] = [];
  let prev = 'x';
  if (precision === 'fp16') {
    nodes.push(cast('x', 'x16', 'float16'));
    prev = 'x16';
  }
  for (let l = 0; l < layers; l++) {
    const w = new Float32Array(hidden * hidden);
    for (let i = 0; i < w.length; i++) w[i] = (next() * 2 - 1) * scale;
    const b = new Float32Array(hidden);
    for (let i = 0; i < b.length; i++) b[i] = (next() * 2 - 1) * 0.01;
    const out = l < layers - 1 ? `h${l}` : precision === 'fp16' ? 'y16' : 'y';
    const layer = mlpLayer(precision, l, prev, out, w, b, hidden);
    nodes.push(...layer.nodes);
    initializers.push(...layer.initializers);
    prev = out;
  }
  if (precision === 'fp16') nodes.push(cast('y16', 'y', 'float32'));
  return encodeModel({
    name: precision === 'fp32' ? `mlp_${layers}x${hidden}` : `mlp_${layers}x${hidden}_${precision}`,
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
