/**
 * Errors of the native addon. Core exceptions arrive from C++ as plain errors with a `code`
 * (ERR_OUT_OF_MEMORY, ERR_INVALID_HANDLE, ...); {@link fromNativeError} rebuilds them into shoal classes so
 * callers can `instanceof` them and read the numbers that caused them.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BackendError, IllegalStateError, NotFoundError, OutOfMemoryError } from '@shoal/core';

const BRAND = Symbol.for('shoal.error');
function brand(cls: { prototype: object; name: string }): void {
  Object.defineProperty(cls.prototype, BRAND, { value: cls.name });
}

/** An allocation past a pool budget or past the device's capacity: never an out-of-memory crash. */
export class MemoryBudgetError extends OutOfMemoryError {
  /** What was full: "pool 3" or "device cuda:0". */
  readonly scope: string;
  readonly requestedBytes: number;
  readonly usedBytes: number;
  readonly budgetBytes: number;

  constructor(message: string, scope: string, requestedBytes: number, usedBytes: number, budgetBytes: number) {
    super(message, { scope, requestedBytes, usedBytes, budgetBytes });
    this.scope = scope;
    this.requestedBytes = requestedBytes;
    this.usedBytes = usedBytes;
    this.budgetBytes = budgetBytes;
  }
}
brand(MemoryBudgetError);

/**
 * A pool, allocation, blob reference or family handle that is unknown, released twice or used after release,
 * or an allocation handle that belongs to a family's in-flight inference workspace (not the caller's to free).
 */
export class InvalidHandleError extends IllegalStateError {}
brand(InvalidHandleError);

/** The addon is not built (or no built variant loads); the message names the build command. */
export class AddonNotBuiltError extends BackendError {
  constructor(message: string, attempts: readonly string[]) {
    super(message, { attempts, remedy: BUILD_COMMAND });
  }
}
brand(AddonNotBuiltError);

/**
 * How to build the addon; quoted by {@link AddonNotBuiltError}. In shoal's own repository (the package sits in a
 * pnpm workspace: the C++ sources are ../../native) the workspace command; in a user's project, where the package
 * was installed from the registry or a tarball, npm's rebuild.
 */
export const BUILD_COMMAND = `${existsSync(fileURLToPath(new URL('../../../native/CMakeLists.txt', import.meta.url))) ? 'pnpm --filter @shoal/native build' : 'npm rebuild @shoal/native'}   (needs cmake and a C++17 compiler; nvcc adds the CUDA backend)`;

interface NativeErrorShape {
  message: string;
  code?: unknown;
  scope?: unknown;
  requested?: unknown;
  used?: unknown;
  budget?: unknown;
}

/** Rebuilds an error thrown by the addon into its shoal class; argument errors (TypeError, RangeError) pass through. */
export function fromNativeError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof TypeError || err instanceof RangeError) return err;
  const e = err as Error & NativeErrorShape;
  switch (e.code) {
    case 'ERR_OUT_OF_MEMORY':
      return new MemoryBudgetError(e.message, String(e.scope ?? 'host memory'), Number(e.requested ?? 0), Number(e.used ?? 0), Number(e.budget ?? 0));
    case 'ERR_INVALID_HANDLE':
      return new InvalidHandleError(e.message);
    case 'ERR_NOT_FOUND':
      return new NotFoundError(e.message);
    case 'ERR_INVALID_ARGUMENT':
    case 'ERR_IO':
    case 'ERR_BACKEND':
      return new BackendError(e.message, { nativeCode: e.code });
    default:
      return err;
  }
}

/** Runs a synchronous native call, rethrowing its error as a shoal error. */
export function native<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    throw fromNativeError(err);
  }
}

/** Awaits a native promise, rejecting with a shoal error. */
export async function nativeAsync<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw fromNativeError(err);
  }
}
