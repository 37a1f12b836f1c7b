/**
 * A character-level RNN's step as an ONNX graph, written with shoal's own ONNX writer, and the onnxruntime session
 * that runs it. One step reads a token and a hidden state per sequence and returns the next token and state:
 *
 *   h'   = tanh(E[token] + h · W + b)         E [V, H], W [H, H], b [H]
 *   next = argmax(h' · O)                      O [H, V]
 *
 * The weights are seeded and untrained (the example is about serving, not about prose): the same seed gives the
 * same model, and greedy decoding makes every sequence's text a function of its prompt alone.
 */
import { seededRandom } from '@shoal/core';
import { OrtPool, encodeModelBytes, type GraphSpec } from '@shoal/onnx';

/** The vocabulary: newline (the end char) and printable ASCII, 96 tokens. */
export const VOCAB: readonly string[] = ['\n', ...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i))];
export const END_TOKEN = 0;
const TOKEN_OF = new Map(VOCAB.map((c, i) => [c, i]));

/** The token of one character; a character outside the vocabulary is a RangeError naming it. */
export function tokenOf(char: string): number {
  const t = TOKEN_OF.get(char);
  if (t === undefined) throw new RangeError(`character ${JSON.stringify(char)} (code ${char.codePointAt(0)}) is not in the vocabulary (newline and printable ASCII)`);
  return t;
}

export interface CharRnnShape {
  /** Hidden size. @default 1024 */
  hidden?: number;
  /** Weight seed. @default 13 */
  seed?: number;
}

/** The step graph: inputs `token` int64 [B] and `hidden` float32 [B, H]; outputs `next` int64 [B] and `hidden_out` float32 [B, H]. */
export function buildCharRnnModel(shape: CharRnnShape = {}): Uint8Array {
  const H = shape.hidden ?? 1024;
  const V = VOCAB.length;
  if (!Number.isInteger(H) || H < 1) throw new RangeError(`hidden must be a positive integer, got ${H}`);
  const rand = seededRandom(shape.seed ?? 13);
  const uniform = (n: number, scale: number): Float32Array => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
  // A recurrent gain under 1 keeps the state contracting, so a token's effect fades and rounding cannot build up.
  const spec: GraphSpec = {
    name: 'charrnn_step',
    inputs: [
      { name: 'token', type: 'int64', shape: ['batch'] },
      { name: 'hidden', type: 'float32', shape: ['batch', H] },
    ],
    outputs: [
      { name: 'next', type: 'int64', shape: ['batch'] },
      { name: 'hidden_out', type: 'float32', shape: ['batch', H] },
    ],
    initializers: [
      { name: 'E', dims: [V, H], data: uniform(V * H, 1) },
      { name: 'W', dims: [H, H], data: uniform(H * H, 0.9 * Math.sqrt(3 / H)) },
      { name: 'b', dims: [H], data: uniform(H, 0.1) },
      { name: 'O', dims: [H, V], data: uniform(H * V, Math.sqrt(3 / H)) },
    ],
    nodes: [
      { opType: 'Gather', inputs: ['E', 'token'], outputs: ['emb'], attributes: { axis: 0 }, intAttributes: ['axis'] },
      { opType: 'MatMul', inputs: ['hidden', 'W'], outputs: ['hw'] },
      { opType: 'Add', inputs: ['hw', 'emb'], outputs: ['pre0'] },
      { opType: 'Add', inputs: ['pre0', 'b'], outputs: ['pre'] },
      { opType: 'Tanh', inputs: ['pre'], outputs: ['hidden_out'] },
      { opType: 'MatMul', inputs: ['hidden_out', 'O'], outputs: ['logits'] },
      { opType: 'ArgMax', inputs: ['logits'], outputs: ['next'], attributes: { axis: 1, keepdims: 0 }, intAttributes: ['axis', 'keepdims'] },
    ],
  };
  return encodeModelBytes(spec);
}

export interface CharRnnSessionOptions extends CharRnnShape {
  /**
   * ORT intra-op threads. One: a step is well under a millisecond, so a thread pool's wake-ups cost more than
   * they save, and the replica's event loop needs the other core. @default 1
   */
  intraOpThreads?: number;
}

/**
 * The step graph loaded in shoal's OrtPool: one worker thread holds the session, so a step runs off the replica's
 * event loop (which meanwhile takes new requests and writes chunks out), with ORT's spin-waiting off.
 */
export class CharRnn {
  private constructor(private readonly pool: OrtPool, readonly hidden: number) {}

  static async load(opts: CharRnnSessionOptions = {}): Promise<CharRnn> {
    const hidden = opts.hidden ?? 1024;
    const pool = await OrtPool.load({
      model: buildCharRnnModel({ ...opts, hidden }), name: 'charrnn', threads: 1,
      intraOpThreads: opts.intraOpThreads ?? 1, spinning: false, warmup: { dims: { batch: 1 } },
    });
    return new CharRnn(pool, hidden);
  }

  /** One step for `tokens.length` sequences; `hidden` is their states row after row ([B, H]). Both are transferred. */
  async step(tokens: BigInt64Array, hidden: Float32Array): Promise<{ next: BigInt64Array; hidden: Float32Array }> {
    const B = tokens.length;
    if (hidden.length !== B * this.hidden) throw new RangeError(`hidden has ${hidden.length} values; ${B} sequences of hidden size ${this.hidden} need ${B * this.hidden}`);
    const out = await this.pool.run({
      token: { type: 'int64', dims: [B], data: tokens },
      hidden: { type: 'float32', dims: [B, this.hidden], data: hidden },
    });
    return { next: out['next']!.data as BigInt64Array, hidden: out['hidden_out']!.data as Float32Array };
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
