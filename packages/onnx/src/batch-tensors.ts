/**
 * Dynamic batching along dim 0, as functions of their arguments: stack several requests' tensors into one run and
 * split the run's outputs back per request. Requests stack only when every input agrees on type and on every dim
 * after the first; batchKey() says which requests can share a run. Stacking copies each request's inputs once
 * (counted in @shoal/oip's tensorCopies); splitting copies nothing.
 */
import { BatchSizeMismatchError, ShapeMismatchError } from '@shoal/core';
import { TYPED_ARRAYS, countTensorCopy, elementCount, type Feeds, type NumericArray, type NumericTensorType, type TensorData } from '@shoal/oip';

/** Requests with equal keys can be stacked: same input names, types and non-batch dims. */
export function batchKey(feeds: Feeds): string {
  return Object.keys(feeds).sort().map((name) => {
    const t = feeds[name]!;
    return `${name}:${t.type}:${t.dims.slice(1).join('x')}`;
  }).join('|');
}

/** Rows of one request: dim 0 of its inputs, which must agree. */
export function batchRows(feeds: Feeds, item = 0): number {
  let rows: number | undefined;
  let first = '';
  for (const [name, t] of Object.entries(feeds)) {
    if (t.dims.length === 0) throw new ShapeMismatchError(`item ${item}: input "${name}" is a scalar and has no batch dim to stack along`);
    const r = t.dims[0]!;
    if (rows === undefined) { rows = r; first = name; continue; }
    if (r !== rows) throw new ShapeMismatchError(`item ${item}: inputs disagree on the batch dim: "${first}" has ${rows} rows, "${name}" has ${r}`);
  }
  if (rows === undefined) throw new ShapeMismatchError(`item ${item}: has no inputs to stack`);
  return rows;
}

/** Concatenates tensors along dim 0. Types and dims after the first must match; one part is returned as is. */
export function stackTensors(name: string, parts: readonly TensorData[]): TensorData {
  const head = parts[0];
  if (head === undefined) throw new RangeError(`stackTensors("${name}"): no tensors to stack`);
  if (head.dims.length === 0) throw new ShapeMismatchError(`input "${name}" is a scalar and has no batch dim to stack along`);
  if (parts.length === 1) return head;
  const rest = head.dims.slice(1);
  let rows = 0;
  parts.forEach((p, i) => {
    if (p.type !== head.type) throw new ShapeMismatchError(`input "${name}": item ${i} has type ${p.type}, item 0 has ${head.type}; only equal types stack`);
    const same = p.dims.length === head.dims.length && p.dims.every((d, k) => k === 0 || d === head.dims[k]);
    if (!same) throw new ShapeMismatchError(`input "${name}": item ${i} has dims [${p.dims.join(',')}], item 0 has [${head.dims.join(',')}]; dims after the batch dim must match to stack`);
    const want = elementCount(p.dims);
    if (p.data.length !== want) throw new ShapeMismatchError(`input "${name}": item ${i} has shape [${p.dims.join(',')}] (${want} elements) but ${p.data.length} elements of data`);
    rows += p.dims[0]!;
  });
  const dims = [rows, ...rest];
  if (head.type === 'string') {
    return { type: 'string', dims, data: parts.flatMap((p) => p.data as string[]) };
  }
  const out = new TYPED_ARRAYS[head.type as NumericTensorType](elementCount(dims));
  let at = 0;
  for (const p of parts) {
    (out as Uint8Array).set(p.data as Uint8Array, at);
    countTensorCopy('input', 'onnx.stack', (p.data as NumericArray).byteLength);
    at += p.data.length;
  }
  return { type: head.type, dims, data: out } as TensorData;
}

/**
 * Splits a tensor along dim 0 into parts of `sizes` rows. Numeric parts are views into the tensor's buffer (no
 * copy); a view posted to another thread is copied by prepareForTransfer, so sharing the buffer is safe.
 */
export function splitTensor(name: string, t: TensorData, sizes: readonly number[]): TensorData[] {
  const total = sizes.reduce((s, n) => s + n, 0);
  if (t.dims.length === 0 || t.dims[0] !== total) {
    throw new BatchSizeMismatchError(`output "${name}" has dims [${t.dims.join(',')}], expected ${total} rows along dim 0 (the batch was ${sizes.length} request(s) of ${sizes.join('+')} rows); this output does not follow the batch dim`);
  }
  const rest = t.dims.slice(1);
  const rowElems = elementCount(rest);
  const parts: TensorData[] = [];
  let at = 0;
  for (const n of sizes) {
    const dims = [n, ...rest];
    const end = at + n * rowElems;
    const data = Array.isArray(t.data) ? (t.data as string[]).slice(at, end) : (t.data as NumericArray).subarray(at, end);
    parts.push({ type: t.type, dims, data } as TensorData);
    at = end;
  }
  return parts;
}

/** Stacks requests into one set of feeds; `sizes` are the rows each request contributed, in order. */
export function stackFeeds(items: readonly Feeds[]): { feeds: Feeds; sizes: number[] } {
  const first = items[0];
  if (first === undefined) throw new RangeError('stackFeeds: no items to stack');
  const names = Object.keys(first).sort();
  const sizes = items.map((f, i) => {
    const got = Object.keys(f).sort();
    if (got.join('\u0000') !== names.join('\u0000')) {
      throw new ShapeMismatchError(`item ${i} has inputs [${got.join(', ')}], item 0 has [${names.join(', ')}]; only requests with the same inputs stack`);
    }
    return batchRows(f, i);
  });
  const feeds: Feeds = {};
  for (const name of names) feeds[name] = stackTensors(name, items.map((f) => f[name]!));
  return { feeds, sizes };
}

/** Splits a stacked run's outputs back into one set of outputs per request. */
export function splitFeeds(outputs: Feeds, sizes: readonly number[]): Feeds[] {
  const per: Feeds[] = sizes.map(() => ({}));
  for (const [name, t] of Object.entries(outputs)) {
    splitTensor(name, t, sizes).forEach((part, i) => { per[i]![name] = part; });
  }
  return per;
}
