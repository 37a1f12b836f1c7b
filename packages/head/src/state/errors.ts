/**
 * Errors of the head's state store. Each has a stable `code` and a message that names the store (file or Redis
 * key) and the values that caused it: the lease holder's host, pid and start time, or what is wrong in the data.
 *
 * The codes are not (yet) members of core's ErrorCode union, which this package does not edit; the constructor
 * casts them once. They never cross a process boundary (only the head opens a store), so rebuildError need not
 * know them.
 */
import { ShoalError, type ErrorCode } from '@shoal/core';

export type StateStoreErrorCode = 'ERR_STORE_LOCKED' | 'ERR_STORE_LEASE_LOST' | 'ERR_STORE_CORRUPT' | 'ERR_STORE_IO';

/** Who holds (or held) the single-head lease. */
export interface LeaseHolder {
  /** os.hostname() of the holder. */
  host: string;
  pid: number;
  /** Wall ms (epoch) when the holder took the lease. */
  sinceMs: number;
}

/** `host=h pid=1 since=2024-01-01T00:00:00.000Z`: how every message names a holder. */
export function describeHolder(holder: LeaseHolder): string {
  const since = new Date(holder.sinceMs);
  return `host=${holder.host} pid=${holder.pid} since=${Number.isNaN(since.getTime()) ? String(holder.sinceMs) : since.toISOString()}`;
}

// The same brand core's errors carry (core does not export its helper), so `instanceof` survives two copies.
const BRAND = Symbol.for('shoal.error');
function brand(cls: { prototype: object; name: string }): void {
  Object.defineProperty(cls.prototype, BRAND, { value: cls.name });
}

/** Base class: `instanceof StateStoreError` matches every error below. */
export class StateStoreError extends ShoalError {
  constructor(code: StateStoreErrorCode, message: string, opts: { httpStatus?: number; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(code as unknown as ErrorCode, message, opts);
  }
}
brand(StateStoreError);

/** ERR_STORE_LOCKED: another head holds the lease; `details.holder` says who. */
export class StoreLockedError extends StateStoreError {
  readonly holder: LeaseHolder;
  constructor(message: string, holder: LeaseHolder) {
    super('ERR_STORE_LOCKED', message, { httpStatus: 503, details: { holder } });
    this.holder = holder;
  }
}
brand(StoreLockedError);

/**
 * ERR_STORE_LEASE_LOST: this head no longer holds the lease (it expired while the head stalled, or another head
 * broke it), so the write was refused rather than overwrite the new holder's state. The head must stop acting.
 * `holder` is the new holder when known.
 */
export class StoreLeaseLostError extends StateStoreError {
  readonly holder: LeaseHolder | undefined;
  constructor(message: string, holder?: LeaseHolder) {
    super('ERR_STORE_LEASE_LOST', message, { httpStatus: 503, details: { holder } });
    this.holder = holder;
  }
}
brand(StoreLeaseLostError);

const CORRUPT_REMEDY = 'fix it or move it aside: the head will not start empty over it';

/** ERR_STORE_CORRUPT: stored data is unreadable (bad JSON, wrong schema version, a bad field); `where` names it. */
export class StoreCorruptError extends StateStoreError {
  constructor(where: string, problem: string, opts: { cause?: unknown; remedy?: string } = {}) {
    super('ERR_STORE_CORRUPT', `state store ${where} is corrupt: ${problem}; ${opts.remedy ?? CORRUPT_REMEDY}`, {
      httpStatus: 500, details: { where }, cause: opts.cause,
    });
  }
}
brand(StoreCorruptError);

/** ERR_STORE_IO: the backend failed the operation (a file system error, Redis unreachable or timing out). */
export class StoreIoError extends StateStoreError {
  constructor(message: string, cause: unknown) {
    super('ERR_STORE_IO', `${message}: ${cause instanceof Error ? cause.message : String(cause)}`, { httpStatus: 503, cause });
  }
}
brand(StoreIoError);
