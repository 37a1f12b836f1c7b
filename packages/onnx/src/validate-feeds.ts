/** Checks feeds against model metadata on the main thread, so a bad request fails fast with a message that names the input. */
import { BadRequestError, ShapeMismatchError } from '@shoal/core';
import { elementCount, type Feeds } from './tensor.ts';
import type { ModelMetadata } from './thread-protocol.ts';

/** Why `got` does not fit `expected` (symbolic dims match any size), or undefined when it fits. */
export function shapeProblem(expected: ReadonlyArray<number | string>, got: readonly number[]): string | undefined {
  const show = `[${expected.map((d) => (typeof d === 'number' ? String(d) : d)).join(',')}]`;
  if (expected.length !== got.length) return `expected rank ${expected.length} ${show}, got rank ${got.length} [${got.join(',')}]`;
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!;
    if (!Number.isInteger(g) || g < 0) return `dim ${i} must be a non-negative integer, got ${String(g)}`;
    const e = expected[i];
    if (typeof e === 'number' && e !== g) return `expected ${show}, got [${got.join(',')}] (dim ${i} must be ${e})`;
  }
  return undefined;
}

export function validateFeeds(modelName: string, metadata: ModelMetadata, feeds: Feeds, outputs?: readonly string[]): void {
  const byName = new Map(metadata.inputs.map((i) => [i.name, i]));
  for (const name of Object.keys(feeds)) {
    if (!byName.has(name)) throw new BadRequestError(`unknown input "${name}" for model "${modelName}"; inputs are: ${[...byName.keys()].join(', ')}`);
  }
  for (const input of metadata.inputs) {
    const t = feeds[input.name];
    if (t === undefined) throw new BadRequestError(`missing input "${input.name}" for model "${modelName}"`);
    if (t.type !== input.type) throw new BadRequestError(`input "${input.name}" of model "${modelName}": expected type ${input.type}, got ${String(t.type)}`);
    const problem = shapeProblem(input.shape, t.dims);
    if (problem !== undefined) throw new ShapeMismatchError(`input "${input.name}" of model "${modelName}": ${problem}`);
    const n = elementCount(t.dims);
    if (t.data.length !== n) throw new ShapeMismatchError(`input "${input.name}" of model "${modelName}": shape [${t.dims.join(',')}] needs ${n} elements, data has ${t.data.length}`);
  }
  if (outputs !== undefined) {
    const known = new Set(metadata.outputs.map((o) => o.name));
    for (const o of outputs) {
      if (!known.has(o)) throw new BadRequestError(`unknown output "${o}" for model "${modelName}"; outputs are: ${[...known].join(', ')}`);
    }
  }
}
