/**
 * Messages between an OrtPool (main thread) and its ORT threads: a discriminated union per direction. The
 * thread's init arrives in workerData with the protocol version, and the thread refuses a version it does not
 * speak, so a stale worker file never half-works.
 */
import type { WireError } from '@shoal/core';
import type { Feeds, ModelMetadata } from '@shoal/oip';

// The model's inputs and outputs are the protocol's types; re-exported for the thread's imports.
export type { ModelMetadata, TensorMetadata } from '@shoal/oip';

export const THREAD_PROTOCOL_VERSION = 2;

export type ExecutionProviderName = 'cpu' | 'cuda';

export interface ThreadInit {
  v: number;
  index: number;
  /** A file path, or the model bytes (each thread gets its own copy). */
  model: string | Uint8Array;
  intraOpThreads: number;
  interOpThreads: number;
  /** Whether ORT's pool threads spin-wait between parallel sections. */
  spinning: boolean;
  /** Nice increment for this thread and the ORT threads it spawns (0 leaves the priority alone). */
  nice: number;
  executionProviders: ExecutionProviderName[];
  /** Retry on CPU when a non-CPU provider fails to load. */
  cpuFallback: boolean;
}

export type ToThread =
  | { kind: 'run'; id: number; feeds: Feeds; outputs?: string[] }
  | { kind: 'close' }
  /** Test hook: the thread exits with `code` once the runs queued before this message are done. */
  | { kind: 'exit-for-test'; code: number };

export type FromThread =
  | { kind: 'ready'; metadata: ModelMetadata; provider: ExecutionProviderName; fallbackReason?: string; priorityNote?: string }
  | { kind: 'init-failed'; error: WireError }
  | { kind: 'result'; id: number; outputs: Feeds }
  | { kind: 'run-failed'; id: number; error: WireError }
  | { kind: 'closed' };
