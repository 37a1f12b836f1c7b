/**
 * Messages between an OrtPool (main thread) and its ORT threads: a discriminated union per direction. The
 * thread's init arrives in workerData with the protocol version, and the thread refuses a version it does not
 * speak, so a stale worker file never half-works.
 */
import type { WireError } from '@shoal/core';
import type { CopyRecord, Feeds, ModelMetadata } from '@shoal/oip';

// The model's inputs and outputs are the protocol's types; re-exported for the thread's imports.
export type { ModelMetadata, TensorMetadata } from '@shoal/oip';

export const THREAD_PROTOCOL_VERSION = 3;

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

/**
 * The ORT session config entries (onnxruntime_session_options_config_keys.h; values are strings) a thread's session
 * gets. ORT's own default lets its intra-op and inter-op pool threads spin-wait for work; shoal turns both off unless
 * `spinning` is set, so idle inference threads leave the cores to the event loops.
 */
export function sessionConfigEntries(init: Pick<ThreadInit, 'spinning'>): Record<string, string> {
  const spin = init.spinning ? '1' : '0';
  return { 'session.intra_op.allow_spinning': spin, 'session.inter_op.allow_spinning': spin };
}

export type ToThread =
  | { kind: 'run'; id: number; feeds: Feeds; outputs?: string[] }
  | { kind: 'close' }
  /** Test hook: the thread exits with `code` once the runs queued before this message are done. */
  | { kind: 'exit-for-test'; code: number };

export type FromThread =
  | { kind: 'ready'; metadata: ModelMetadata; provider: ExecutionProviderName; fallbackReason?: string; priorityNote?: string }
  | { kind: 'init-failed'; error: WireError }
  /** `copies`: the copies of tensor bytes this run made in the thread, for the process's tally (tensorCopies). */
  | { kind: 'result'; id: number; outputs: Feeds; copies: CopyRecord[] }
  | { kind: 'run-failed'; id: number; error: WireError }
  /** Copies found after a post: buffers that went by structured clone instead of by transfer. */
  | { kind: 'copies'; copies: CopyRecord[] }
  | { kind: 'closed' };
