/**
 * The main thread's side of one ORT worker thread: starts it, keeps the table of runs sent to it, and rejects
 * that whole table with PeerGoneError the moment the thread exits, so no run waits on a dead thread.
 */
import { Worker } from 'node:worker_threads';
import { BackendError, PeerGoneError, rebuildError } from '@shoal/core';
import { addTensorCopies, countTensorCopy, type Feeds, type NumericArray } from '@shoal/oip';
import { clonedOnPost, copiedForPost, prepareForTransfer } from './tensor.ts';
import type { FromThread, ThreadInit, ToThread } from './thread-protocol.ts';

export type ThreadState = 'starting' | 'ready' | 'dead' | 'closed';

export interface Pending { resolve: (outputs: Feeds) => void; reject: (err: Error) => void }

/** Every output buffer an ORT thread has handed this thread (isFromOrtThread). */
const fromThreads = new WeakSet<ArrayBufferLike>();

/**
 * Whether a typed array's buffer is one an ORT thread posted here: an output that is not was copied (or built)
 * on this thread after the run. Views into the posted buffer (a stacked batch's rows) count as from the thread.
 */
export function isFromOrtThread(data: NumericArray): boolean {
  return fromThreads.has(data.buffer);
}

/** Where thread entry files live: TypeScript sources need a tsx bootstrap; compiled .js starts directly. */
function threadEntry(): { file: URL; entry: string | undefined } {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = new URL(fromSource ? './ort-thread.ts' : './ort-thread.js', import.meta.url);
  return fromSource ? { file: new URL('./ort-thread-boot.mjs', import.meta.url), entry: entry.href } : { file: entry, entry: undefined };
}

export class OrtThreadClient {
  state: ThreadState = 'starting';
  readonly pending = new Map<number, Pending>();
  private readonly worker: Worker;
  private readonly ready: Promise<Extract<FromThread, { kind: 'ready' }>>;
  private closedResolve: (() => void) | undefined;

  constructor(readonly index: number, private readonly modelName: string, init: ThreadInit, onDeath: (t: OrtThreadClient) => void) {
    const { file, entry } = threadEntry();
    this.worker = new Worker(file, { workerData: { ...init, entry }, name: `shoal-ort-${modelName}-${index}` });
    let readyResolve!: (m: Extract<FromThread, { kind: 'ready' }>) => void;
    let readyReject!: (err: Error) => void;
    this.ready = new Promise((res, rej) => { readyResolve = res; readyReject = rej; });
    // load() always awaits `ready`; this keeps an early death from surfacing as an unhandled rejection first.
    this.ready.catch(() => undefined);

    this.worker.on('message', (msg: FromThread) => {
      switch (msg.kind) {
        case 'ready': this.state = 'ready'; readyResolve(msg); break;
        case 'init-failed': readyReject(rebuildError(msg.error)); break;
        case 'result':
          addTensorCopies(msg.copies);
          for (const t of Object.values(msg.outputs)) if (!Array.isArray(t.data)) fromThreads.add((t.data as NumericArray).buffer);
          this.settle(msg.id, (p) => p.resolve(msg.outputs));
          break;
        case 'run-failed': this.settle(msg.id, (p) => p.reject(rebuildError(msg.error))); break;
        case 'copies': addTensorCopies(msg.copies); break;
        case 'closed': this.state = 'closed'; this.closedResolve?.(); break;
      }
    });
    let lastError: Error | undefined;
    this.worker.on('error', (err) => { lastError = err; });
    this.worker.on('exit', (code) => {
      const wasClosed = this.state === 'closed';
      const reason = lastError === undefined ? `exit code ${code}` : `exit code ${code}: ${lastError.message}`;
      const err = new PeerGoneError(`ort thread ${index} of model "${modelName}" died (${reason}) with ${this.pending.size} run(s) pending`);
      readyReject(err);
      this.state = wasClosed ? 'closed' : 'dead';
      const pending = [...this.pending.values()];
      this.pending.clear();
      for (const p of pending) p.reject(err);
      this.closedResolve?.();
      if (!wasClosed) onDeath(this);
    });
  }

  whenReady(): Promise<Extract<FromThread, { kind: 'ready' }>> { return this.ready; }

  private settle(id: number, fn: (p: Pending) => void): void {
    const p = this.pending.get(id);
    if (p === undefined) return;
    this.pending.delete(id);
    fn(p);
  }

  run(id: number, feeds: Feeds, outputs: string[] | undefined, transfer: boolean): Promise<Feeds> {
    return new Promise<Feeds>((resolve, reject) => {
      if (this.state !== 'ready') {
        reject(new PeerGoneError(`ort thread ${this.index} of model "${this.modelName}" is ${this.state}`));
        return;
      }
      this.pending.set(id, { resolve, reject });
      const prepared = transfer ? prepareForTransfer(feeds) : { tensors: feeds, transfer: [] };
      const msg: ToThread = outputs === undefined ? { kind: 'run', id, feeds: prepared.tensors } : { kind: 'run', id, feeds: prepared.tensors, outputs };
      try {
        this.worker.postMessage(msg, prepared.transfer);
        for (const bytes of copiedForPost(feeds, prepared.tensors)) countTensorCopy('input', 'onnx.thread-post', bytes);
        // Without transfer (warm-up feeds, sent to every thread) the feeds are cloned: counted here, as any clone.
        for (const bytes of clonedOnPost(prepared.tensors)) countTensorCopy('input', 'onnx.thread-post-clone', bytes);
      } catch (err) {
        this.pending.delete(id);
        reject(err instanceof Error ? err : new BackendError(String(err)));
      }
    });
  }

  /**
   * Asks the thread to release its session and exit; terminates it if it has not within `graceMs`. Terminating is
   * the last resort: onnxruntime-node aborts the whole process when a thread is terminated inside run().
   */
  async close(graceMs: number): Promise<void> {
    if (this.state === 'dead' || this.state === 'closed') return;
    const closed = new Promise<void>((res) => { this.closedResolve = res; });
    this.worker.postMessage({ kind: 'close' } satisfies ToThread);
    const timer = setTimeout(() => { void this.worker.terminate(); }, graceMs);
    await closed;
    clearTimeout(timer);
    await this.worker.terminate();
  }

  exitForTest(code: number): void { this.worker.postMessage({ kind: 'exit-for-test', code } satisfies ToThread); }

  /** Closes a thread that failed during load, once its session creation has settled (never mid-native-call). */
  async dispose(graceMs: number): Promise<void> {
    try { await this.ready; } catch { return; } // a thread whose init failed exits on its own
    await this.close(graceMs);
  }
}
