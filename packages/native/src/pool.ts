/** A device memory pool with a byte budget (one per replica) over the native caching allocator. */
import type { NativePoolStats, NativeRuntimeHandle } from './addon-types.ts';
import { native } from './errors.ts';
import { checkBytes } from './validate.ts';

/** One live allocation; `free()` twice raises InvalidHandleError. */
export class Allocation {
  constructor(readonly pool: MemoryPool, readonly handle: number, readonly bytes: number) {}
  free(): void {
    this.pool.free(this.handle);
  }
}

export class MemoryPool {
  /** @internal */
  constructor(private readonly h: NativeRuntimeHandle, readonly id: number, readonly device: number, readonly budgetBytes: number) {}

  /** Allocates from the pool; past the budget it throws MemoryBudgetError with requested, used and budget bytes. */
  alloc(bytes: number): Allocation {
    checkBytes('bytes', bytes, 1);
    return new Allocation(this, native(() => this.h.poolAlloc(this.id, bytes)), bytes);
  }

  /**
   * Frees by handle. An unknown or already freed handle raises InvalidHandleError, and so does a handle of a
   * family's inference workspace in this pool (the running batch owns it and frees it when it ends).
   */
  free(handle: number): void {
    checkBytes('handle', handle, 0);
    native(() => this.h.poolFree(this.id, handle));
  }

  stats(): NativePoolStats {
    return native(() => this.h.poolStats(this.id));
  }

  /** Returns cached blocks to the device. */
  emptyCache(): void {
    native(() => this.h.poolEmptyCache(this.id));
  }

  /** Returns every block to the device; later calls raise InvalidHandleError. Families on it keep it alive until released. */
  destroy(): void {
    native(() => this.h.destroyPool(this.id));
  }
}
