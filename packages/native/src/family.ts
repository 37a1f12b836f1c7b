/**
 * A loaded model family: one shared base plus per-variant adapters/heads. A batch may mix variants: the
 * addon runs each base layer once for the whole batch and groups adapter and head work by variant.
 */
import type { NativeFamilyStats, NativeRuntimeHandle } from './addon-types.ts';
import { native, nativeAsync } from './errors.ts';

/** One request row for {@link ModelFamily.runItems}: the batch function for per-replica dynamic batching. */
export interface FamilyItem {
  variant: string;
  /** inputDim floats. */
  input: Float32Array;
}

export class ModelFamily {
  private readonly index: Map<string, number>;

  /** @internal */
  constructor(
    private readonly h: NativeRuntimeHandle,
    readonly id: number,
    readonly name: string,
    readonly inputDim: number,
    readonly outputDim: number,
    readonly variants: readonly string[],
  ) {
    this.index = new Map(variants.map((v, i) => [v, i]));
  }

  /**
   * Runs rows = variants.length inputs ([rows x inputDim], row-major), row i through variants[i] (an id or an
   * index). Resolves to [rows x outputDim] in request order. Runs on a native thread.
   */
  async run(input: Float32Array, variants: ReadonlyArray<string | number>): Promise<Float32Array> {
    if (!(input instanceof Float32Array)) throw new TypeError(`input must be a Float32Array, got ${typeof input}`);
    if (!Array.isArray(variants)) throw new TypeError('variants must be an array of variant ids or indices');
    if (input.length !== variants.length * this.inputDim) {
      throw new RangeError(`input has ${input.length} floats, expected rows=${variants.length} x inputDim=${this.inputDim} for family "${this.name}"`);
    }
    const idx = new Int32Array(variants.length);
    for (let i = 0; i < variants.length; i++) idx[i] = this.variantIndex(variants[i], i);
    return nativeAsync(() => this.h.runFamily(this.id, input, idx));
  }

  /** Runs one row per item as one mixed batch; the result for item i is outputs[i]. */
  async runItems(items: readonly FamilyItem[]): Promise<Float32Array[]> {
    const input = new Float32Array(items.length * this.inputDim);
    items.forEach((it, i) => {
      if (!(it.input instanceof Float32Array) || it.input.length !== this.inputDim) {
        throw new RangeError(`items[${i}].input must be a Float32Array of inputDim=${this.inputDim} floats, got ${it.input?.length}`);
      }
      input.set(it.input, i * this.inputDim);
    });
    const y = await this.run(input, items.map((it) => it.variant));
    return items.map((_, i) => y.slice(i * this.outputDim, (i + 1) * this.outputDim));
  }

  stats(): NativeFamilyStats {
    return native(() => this.h.familyStats(this.id));
  }

  /** Drops the family's blob references (after in-flight batches finish); later calls raise InvalidHandleError. */
  release(): void {
    native(() => this.h.releaseFamily(this.id));
  }

  private variantIndex(v: string | number | undefined, row: number): number {
    if (typeof v === 'number') {
      if (!Number.isInteger(v) || v < 0 || v >= this.variants.length) throw new RangeError(`variants[${row}] must be an index in [0, ${this.variants.length}), got ${v}`);
      return v;
    }
    const i = v === undefined ? undefined : this.index.get(v);
    if (i === undefined) throw new RangeError(`variants[${row}] names unknown variant ${JSON.stringify(v)} of family "${this.name}" (known: ${this.variants.join(', ')})`);
    return i;
  }
}
