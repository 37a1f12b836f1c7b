/**
 * One native runtime per process. Shared weight blobs are deduplicated per runtime, so the worker's device
 * report and every replica in the process must use the same one: the first caller opens it with its options,
 * later callers get it as it is. Kept on globalThis under a Symbol.for key so two copies of this package in one
 * process still share it.
 */
import { openNativeRuntime, type NativeRuntime } from './runtime.ts';
import type { NativeOptions } from './options.ts';

const KEY = Symbol.for('shoal.native.processRuntime');

interface Slot {
  [KEY]?: NativeRuntime;
}

/** The process's runtime, opened on first use with `options` (later calls ignore theirs). */
export function processRuntime(options: NativeOptions = {}): NativeRuntime {
  const slot = globalThis as Slot;
  slot[KEY] ??= openNativeRuntime(options);
  return slot[KEY];
}
