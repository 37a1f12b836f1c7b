/**
 * A minimal ONNX (protobuf) writer: just enough of onnx.proto to emit graphs of standard operators with
 * float32, float16 and integer initializers (quantized weights included), so tests and benchmarks can build models
 * in TypeScript without python or protobufjs.
 * Messages are kept as lists of chunks with a known length, so embedding a large weight tensor in a graph
 * never copies it until the final write.
 */

/** A serialized protobuf message: chunks in order and their total byte length. */
interface Encoded { chunks: Uint8Array[]; length: number }

/** TensorProto.DataType values for the element types this writer emits. */
export const ONNX_ELEM_TYPE = { float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7, string: 8, bool: 9, float16: 10, float64: 11, uint32: 12, uint64: 13 } as const;
export type OnnxElemType = keyof typeof ONNX_ELEM_TYPE;

/** A graph input or output: a dimension is a fixed size (number) or a symbolic name (dynamic). */
export interface ValueInfo { name: string; type: OnnxElemType; shape: Array<number | string> }

/** The typed array an initializer of each element type is given as (float16: IEEE-754 binary16 bits). */
export interface InitializerArrays {
  float32: Float32Array; float16: Uint16Array; float64: Float64Array;
  int8: Int8Array; uint8: Uint8Array; int16: Int16Array; uint16: Uint16Array; int32: Int32Array; uint32: Uint32Array;
  int64: BigInt64Array; uint64: BigUint64Array;
}
export type InitializerType = keyof InitializerArrays;

/** A constant (weight) stored in the graph: `type` says what `data` holds (float32 when absent); a scalar has `dims: []`. */
export type Initializer =
  | { name: string; dims: number[]; type?: 'float32'; data: Float32Array }
  | { [T in Exclude<InitializerType, 'float32'>]: { name: string; dims: number[]; type: T; data: InitializerArrays[T] } }[Exclude<InitializerType, 'float32'>];

const ARRAY_OF: { [T in InitializerType]: new (n: number) => InitializerArrays[T] } = {
  float32: Float32Array, float16: Uint16Array, float64: Float64Array, int8: Int8Array, uint8: Uint8Array,
  int16: Int16Array, uint16: Uint16Array, int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
};

export interface NodeSpec {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  /** Integer and float attributes only (what Gemm/Softmax/ReduceSum and friends need). */
  attributes?: Record<string, number | number[]>;
  intAttributes?: string[];
}

export interface GraphSpec {
  name: string;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  nodes: NodeSpec[];
  initializers?: Initializer[];
  /** @default 17 */
  opset?: number;
}

class Writer {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;
  private scratch: number[] = [];

  private flushScratch(): void {
    if (this.scratch.length === 0) return;
    const b = Uint8Array.from(this.scratch);
    this.chunks.push(b);
    this.length += b.length;
    this.scratch = [];
  }

  private varint(v: number): void {
    // Values here are lengths, tags, dims and enums: non-negative and below 2^53.
    let n = v;
    while (n >= 0x80) {
      this.scratch.push((n % 0x80) | 0x80);
      n = Math.floor(n / 0x80);
    }
    this.scratch.push(n);
  }

  private tag(field: number, wire: number): void { this.varint(field * 8 + wire); }

  int(field: number, v: number): this { this.tag(field, 0); this.varint(v); return this; }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.scratch.push(...b);
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, 2);
    this.varint(data.byteLength);
    this.flushScratch();
    this.chunks.push(data);
    this.length += data.byteLength;
    return this;
  }

  string(field: number, s: string): this { return this.bytes(field, new TextEncoder().encode(s)); }

  message(field: number, m: Encoded): this {
    this.tag(field, 2);
    this.varint(m.length);
    this.flushScratch();
    this.chunks.push(...m.chunks);
    this.length += m.length;
    return this;
  }

  done(): Encoded {
    this.flushScratch();
    return { chunks: this.chunks, length: this.length };
  }
}

function valueInfo(v: ValueInfo): Encoded {
  const shape = new Writer();
  for (const d of v.shape) {
    const dim = new Writer();
    if (typeof d === 'number') dim.int(1, d); else dim.string(2, d);
    shape.message(1, dim.done());
  }
  const tensorType = new Writer().int(1, ONNX_ELEM_TYPE[v.type]).message(2, shape.done()).done();
  const type = new Writer().message(1, tensorType).done();
  return new Writer().string(1, v.name).message(2, type).done();
}

function initializer(t: Initializer): Encoded {
  const type = t.type ?? 'float32';
  // A mismatch would write bytes that ORT reads as another type or refuses with a message about the file.
  if (!(t.data instanceof ARRAY_OF[type])) throw new TypeError(`initializer "${t.name}": type ${type} needs a ${ARRAY_OF[type].name}, got ${t.data.constructor.name}`);
  const count = t.dims.reduce((a, b) => a * b, 1);
  if (t.data.length !== count) throw new RangeError(`initializer "${t.name}": dims [${t.dims.join(', ')}] hold ${count} elements, data has ${t.data.length}`);
  const w = new Writer();
  for (const d of t.dims) w.int(1, d);
  w.int(2, ONNX_ELEM_TYPE[type]).string(8, t.name);
  // raw_data is little-endian; every host shoal runs on is little-endian.
  return w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)).done();
}

function node(n: NodeSpec, index: number): Encoded {
  const w = new Writer();
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name ?? `${n.opType}_${index}`).string(4, n.opType);
  for (const [name, value] of Object.entries(n.attributes ?? {})) {
    const a = new Writer().string(1, name);
    const isInt = n.intAttributes?.includes(name) ?? false;
    if (Array.isArray(value)) {
      for (const v of value) a.int(8, v);
      a.int(20, 7); // INTS
    } else if (isInt) {
      a.int(3, value).int(20, 2); // INT
    } else {
      a.float(2, value).int(20, 1); // FLOAT
    }
    w.message(5, a.done());
  }
  return w.done();
}

/** Serializes a graph into ONNX model bytes (chunks, to be concatenated or written in order). */
export function encodeModel(spec: GraphSpec): Uint8Array[] {
  const g = new Writer();
  spec.nodes.forEach((n, i) => g.message(1, node(n, i)));
  g.string(2, spec.name);
  for (const t of spec.initializers ?? []) g.message(5, initializer(t));
  for (const v of spec.inputs) g.message(11, valueInfo(v));
  for (const v of spec.outputs) g.message(12, valueInfo(v));
  const opset = new Writer().string(1, '').int(2, spec.opset ?? 17).done();
  const model = new Writer().int(1, 8).string(2, 'shoal').string(3, '0.1.0').message(7, g.done()).message(8, opset).done();
  return model.chunks;
}

/** Serializes a graph into one contiguous buffer. */
export function encodeModelBytes(spec: GraphSpec): Uint8Array {
  const chunks = encodeModel(spec);
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) { out.set(c, at); at += c.byteLength; }
  return out;
}
