/**
 * Every check of a tensor against a model's metadata, in one place: the request decoder runs `checkShape` before
 * it reads or allocates any data, and backends run `validateFeeds` on feeds built in code. A bad tensor is a 400
 * (BadRequestError for a malformed value, ShapeMismatchError for one the model does not take) whose message
 * names the input, the field and the value, so nothing reaches a backend that would answer it with a 500.
 */
import { BadRequestError, ShapeMismatchError } from '@shoal/core';
import { elementCount, type Feeds, type ModelMetadata, type TensorMetadata } from './tensor.ts';

/** How checks name a tensor: `input "x" of model "tiny"`. */
export function inputLabel(model: string, input: string): string {
  return `input "${input}" of model "${model}"`;
}

function showExpected(shape: ReadonlyArray<number | string>): string {
  return `[${shape.map(String).join(',')}]`;
}

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

/**
 * Checks the dims a request gives for `meta` and returns them. Rejects, in this order: a shape that is not an
 * array; a dim that is not a non-negative integer; a rank the model does not have; a fixed dim that differs
 * (zero included); a dynamic dim of 0 (an empty batch is refused here rather than by the backend); more than
 * `maxElements` elements, checked before any data is read so the bound holds whatever the body claims.
 */
export function checkShape(model: string, meta: TensorMetadata, shape: unknown, maxElements: number): number[] {
  const at = inputLabel(model, meta.name);
  if (!Array.isArray(shape)) throw new BadRequestError(`${at}: "shape" must be an array of non-negative integers, got ${show(shape)}`);
  shape.forEach((d: unknown, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) throw new BadRequestError(`${at}: shape[${i}] must be a non-negative integer, got ${show(d)}`);
  });
  const dims = shape as number[];
  const expected = showExpected(meta.shape);
  const got = `[${dims.join(',')}]`;
  if (dims.length !== meta.shape.length) throw new ShapeMismatchError(`${at}: expected rank ${meta.shape.length} ${expected}, got rank ${dims.length} ${got}`);
  dims.forEach((d, i) => {
    const e = meta.shape[i]!;
    if (typeof e === 'number' && d !== e) throw new ShapeMismatchError(`${at}: expected ${expected}, got ${got} (dim ${i} must be ${e})`);
    if (typeof e === 'string' && d === 0) throw new ShapeMismatchError(`${at}: expected ${expected}, got ${got} (dim ${i} "${e}" is dynamic and must be at least 1)`);
  });
  const n = elementCount(dims);
  if (n > maxElements) throw new BadRequestError(`${at}: shape ${got} has ${n} elements, more than maxElements=${maxElements}`, { elements: n, maxElements });
  return dims;
}

/** Throws unless `data` holds exactly the elements `dims` needs. */
export function checkDataLength(at: string, dims: readonly number[], length: number): void {
  const n = elementCount(dims);
  if (length !== n) throw new ShapeMismatchError(`${at}: shape [${dims.join(',')}] needs ${n} elements, data has ${length}`);
}

/**
 * Checks feeds built in code (not decoded from a request) against the model: no unknown or missing input, the
 * model's element type, a shape `checkShape` accepts, data of the shape's length, and known output names.
 */
export function validateFeeds(modelName: string, metadata: ModelMetadata, feeds: Feeds, outputs?: readonly string[]): void {
  const byName = new Map(metadata.inputs.map((i) => [i.name, i]));
  for (const name of Object.keys(feeds)) {
    if (!byName.has(name)) throw new BadRequestError(`unknown input "${name}" for model "${modelName}"; inputs are: ${[...byName.keys()].join(', ')}`);
  }
  for (const input of metadata.inputs) {
    const t = feeds[input.name];
    const at = inputLabel(modelName, input.name);
    if (t === undefined) throw new BadRequestError(`missing input "${input.name}" for model "${modelName}"`);
    if (t.type !== input.type) throw new BadRequestError(`${at}: expected type ${input.type}, got ${String(t.type)}`);
    // The data is already in memory, so no element bound applies here; the decoder's maxElements guards allocation.
    checkShape(modelName, input, t.dims, Number.POSITIVE_INFINITY);
    checkDataLength(at, t.dims, t.data.length);
  }
  if (outputs !== undefined) {
    const known = new Set(metadata.outputs.map((o) => o.name));
    for (const o of outputs) {
      if (!known.has(o)) throw new BadRequestError(`unknown output "${o}" for model "${modelName}"; outputs are: ${[...known].join(', ')}`);
    }
  }
}
