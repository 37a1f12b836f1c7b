/**
 * A per-item failure inside an otherwise successful batch. The batch function puts one at an item's index
 * and only that caller rejects, with `error`.
 */
const BRAND = Symbol.for('shoal.batching.ItemError');

export class ItemError {
  readonly error: unknown;

  constructor(error: unknown) {
    this.error = error;
  }

  // Branded like the core errors so a batch function built against another copy of this package still works.
  static [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as { [BRAND]?: unknown })[BRAND] === true;
  }
}
Object.defineProperty(ItemError.prototype, BRAND, { value: true });

/** Marks one item of a batch as failed: `return items.map((x) => ok(x) ? run(x) : itemError(new Error('bad')))`. */
export function itemError(error: unknown): ItemError {
  return new ItemError(error);
}
