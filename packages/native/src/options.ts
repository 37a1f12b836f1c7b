/** Options of {@link openNativeRuntime}, compiled once into a normalised form. */
import { InvalidOptionError, type Logger } from '@shoal/core';

export interface NativeOptions {
  /** Backends to try: 'auto' tries CUDA, then the host backend; 'cuda' fails instead of falling back. @default 'auto' */
  backend?: 'auto' | 'cuda' | 'host';
  /** Capacity of the host backend's pseudo device, in bytes (budgets and eviction count against it). @default 1 GiB */
  hostCapacityBytes?: number;
  /** Native threads for host kernels; 0 means one per core. @default 0 */
  threads?: number;
  /** Directory with the built shoal_native_{cuda,host}.node. @default packages/native/build/Release */
  addonDir?: string;
  /** Load the CUDA addon in a child process first, so a crashing driver cannot take this process down. @default true */
  probeCuda?: boolean;
  /** Where fallbacks and the active backend are logged. @default createLogger('native') */
  logger?: Logger;
}

export interface CompiledNativeOptions {
  backend: 'auto' | 'cuda' | 'host';
  hostCapacityBytes: number;
  threads: number;
  addonDir: string;
  probeCuda: boolean;
  logger: Logger | undefined;
}

export const NATIVE_DEFAULTS = {
  backend: 'auto',
  hostCapacityBytes: 1024 * 1024 * 1024,
  threads: 0,
  probeCuda: true,
} as const;

const KNOWN = new Set(['backend', 'hostCapacityBytes', 'threads', 'addonDir', 'probeCuda', 'logger']);

export function compileNativeOptions(input: NativeOptions, defaultAddonDir: string, path = 'native'): CompiledNativeOptions {
  if (typeof input !== 'object' || input === null) throw new InvalidOptionError(path, 'must be an object', input);
  for (const key of Object.keys(input)) if (!KNOWN.has(key)) throw new InvalidOptionError(`${path}.${key}`, `is not an option (${[...KNOWN].join(', ')})`);
  const backend = input.backend ?? NATIVE_DEFAULTS.backend;
  if (!['auto', 'cuda', 'host'].includes(backend)) throw new InvalidOptionError(`${path}.backend`, 'must be auto, cuda or host', backend);
  const hostCapacityBytes = input.hostCapacityBytes ?? NATIVE_DEFAULTS.hostCapacityBytes;
  if (!Number.isSafeInteger(hostCapacityBytes) || hostCapacityBytes <= 0) {
    throw new InvalidOptionError(`${path}.hostCapacityBytes`, 'must be a positive integer number of bytes', hostCapacityBytes);
  }
  const threads = input.threads ?? NATIVE_DEFAULTS.threads;
  if (!Number.isInteger(threads) || threads < 0 || threads > 1024) throw new InvalidOptionError(`${path}.threads`, 'must be an integer in [0, 1024]', threads);
  const addonDir = input.addonDir ?? defaultAddonDir;
  if (typeof addonDir !== 'string' || addonDir === '') throw new InvalidOptionError(`${path}.addonDir`, 'must be a non-empty path', addonDir);
  const probeCuda = input.probeCuda ?? NATIVE_DEFAULTS.probeCuda;
  if (typeof probeCuda !== 'boolean') throw new InvalidOptionError(`${path}.probeCuda`, 'must be a boolean', probeCuda);
  return { backend, hostCapacityBytes, threads, addonDir, probeCuda, logger: input.logger };
}
