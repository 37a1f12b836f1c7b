/**
 * A canonical hash of a request's input: equal for inputs a replica cannot tell apart, different for any two it
 * can. Object keys are taken in sorted order (so `{a, b}` and `{b, a}` agree); every value carries its type
 * (1, "1", 1n and true never collide); a typed array carries its element type and length, then its bytes (a
 * Float32Array and an Int32Array of the same bytes differ; an OIP tensor is an object, so its `type` and `dims`
 * are in the hash too). A Buffer and a Uint8Array of the same bytes agree: they reach a replica as the same thing.
 *
 * The scalar structure goes into one string, hashed with the binary parts in order: a tensor's bytes are fed to
 * the hash where they lie, never copied. sha256 from node:crypto (OpenSSL, with the CPU's SHA extensions); an
 * input with no binary part is hashed in one call (crypto.hash), which costs a third of a Hash object's setup.
 */
import { createHash, hash as oneShot, type Hash } from 'node:crypto';

/** Nesting past which an input is not cached (a cycle, or a pathological structure). */
const MAX_DEPTH = 64;
/** Strings of scalars are handed to the hash once they pass this many characters. */
const FLUSH_CHARS = 64 * 1024;

/** The value cannot be hashed (a function, a symbol, a class instance, a cycle): the request is not cached. */
export class UnhashableInputError extends Error {
  override readonly name = 'UnhashableInputError';
}

class Writer {
  private text = '';
  /** Made at the first binary part or long text; an input of short scalars never needs one. */
  private hash: Hash | undefined;

  str(s: string): void {
    this.text += s;
    if (this.text.length > FLUSH_CHARS) this.flush();
  }

  bytes(view: ArrayBufferView): void {
    this.flush();
    (this.hash ??= createHash('sha256')).update(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
  }

  digest(): string {
    if (this.hash === undefined) return oneShot('sha256', this.text, 'base64url');
    this.flush();
    return this.hash.digest('base64url');
  }

  private flush(): void {
    if (this.text.length === 0) return;
    (this.hash ??= createHash('sha256')).update(this.text, 'utf8');
    this.text = '';
  }
}

function write(w: Writer, v: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new UnhashableInputError(`input nested deeper than ${MAX_DEPTH} levels (or a cycle)`);
  switch (typeof v) {
    case 'string': w.str('s'); w.str(JSON.stringify(v)); return;
    // String(n) is the shortest form that reads back to n: one text per number; -0 is kept apart from 0.
    case 'number': w.str(Object.is(v, -0) ? 'n-0;' : `n${String(v)};`); return;
    case 'boolean': w.str(v ? 'T' : 'F'); return;
    case 'undefined': w.str('U'); return;
    case 'bigint': w.str(`b${v.toString()};`); return;
    case 'object': break;
    default: throw new UnhashableInputError(`a ${typeof v} cannot be part of a cached request`);
  }
  if (v === null) { w.str('N'); return; }
  if (ArrayBuffer.isView(v)) {
    // Buffer is a Uint8Array: both arrive at a replica as one type.
    const type = v instanceof Uint8Array ? 'Uint8Array' : v.constructor.name;
    w.str(`t${type}:${v.byteLength};`);
    w.bytes(v);
    return;
  }
  if (Array.isArray(v)) {
    w.str(`[${v.length};`);
    for (let i = 0; i < v.length; i++) write(w, v[i], depth + 1);
    w.str(']');
    return;
  }
  if (v instanceof ArrayBuffer) {
    w.str(`B${v.byteLength};`);
    w.bytes(new Uint8Array(v));
    return;
  }
  if (v instanceof Date) { w.str(`D${v.getTime()};`); return; }
  if (v instanceof Map) {
    // Entries in the order of their keys' own hashes: insertion order does not change what a Map means.
    const entries = [...v].map(([k, x]) => [inputHash(k), x] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    w.str(`M${entries.length};`);
    for (const [k, x] of entries) { w.str(`${k};`); write(w, x, depth + 1); }
    return;
  }
  if (v instanceof Set) {
    const keys = [...v].map((x) => inputHash(x)).sort();
    w.str(`S${keys.length};${keys.join(';')};`);
    return;
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    throw new UnhashableInputError(`an instance of ${(v as object).constructor?.name ?? 'a class'} cannot be part of a cached request`);
  }
  const keys = Object.keys(v).sort();
  w.str(`{${keys.length};`);
  for (const k of keys) {
    w.str(JSON.stringify(k));
    write(w, (v as Record<string, unknown>)[k], depth + 1);
  }
  w.str('}');
}

/**
 * The canonical hash of `value` (base64url sha256). Throws UnhashableInputError for what a cache cannot key on.
 */
export function inputHash(value: unknown): string {
  const w = new Writer();
  write(w, value, 0);
  return w.digest();
}

/** Like inputHash, but undefined for an input that cannot be hashed. */
export function tryInputHash(value: unknown): string | undefined {
  try {
    return inputHash(value);
  } catch (err) {
    if (err instanceof UnhashableInputError) return undefined;
    throw err;
  }
}
