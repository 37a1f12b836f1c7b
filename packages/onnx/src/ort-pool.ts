/**
 * OrtPool: one ONNX model loaded into N worker threads (one InferenceSession each). run() validates feeds,
 * posts them to the least-busy thread with their buffers transferred, and resolves with the outputs (also
 * transferred back). Each thread keeps a table of pending runs; when a thread dies every pending run on it is
 * rejected at once with PeerGoneError, and later runs go to the threads still alive.
 */
import { BackendError, IllegalStateError, QueueFullError, ReplicaUnavailableError } from '@shoal/core';
import { validateFeeds, type Feeds } from '@shoal/oip';
import { compileOrtPoolOptions, type CompiledOrtPoolOptions, type OrtPoolOptions } from './options.ts';
import { OrtThreadClient } from './ort-thread-client.ts';
import { THREAD_PROTOCOL_VERSION, type ExecutionProviderName, type ModelMetadata } from './thread-protocol.ts';
import { generateWarmupFeeds } from './warmup.ts';

export interface RunOptions {
  /** Output names to compute; all outputs when unset. */
  outputs?: string[];
  /**
   * Transfer the feeds' ArrayBuffers to the worker thread instead of copying them. A typed array that spans its
   * whole buffer is detached from the caller after run(); a view into a larger buffer is copied. @default true
   */
  transfer?: boolean;
}

export type OrtPoolState = 'loading' | 'ready' | 'closing' | 'closed';

export class OrtPool {
  private state: OrtPoolState = 'loading';
  private nextId = 1;
  private rr = 0;
  private runsStarted = 0;

  private constructor(
    private readonly opts: CompiledOrtPoolOptions,
    private readonly threads: OrtThreadClient[],
    /** Inputs and outputs as read from the model: names, element types, shapes (strings are dynamic dims). */
    readonly metadata: ModelMetadata,
    /** The execution provider the sessions run on (after any CPU fallback). */
    readonly provider: ExecutionProviderName,
  ) {}

  /**
   * Loads the model into `threads` worker threads, runs warm-up on each, and resolves when all are ready.
   * Rejects (and stops every thread it started) if any thread fails to load, warm-up fails, or loadTimeoutMs passes.
   */
  static async load(options: OrtPoolOptions): Promise<OrtPool> {
    const opts = compileOrtPoolOptions(options);
    const model = typeof opts.model === 'string' || (opts.model.byteOffset === 0 && opts.model.byteLength === opts.model.buffer.byteLength)
      ? opts.model
      : opts.model.slice(); // structured clone would copy the whole underlying buffer of a view
    const threads: OrtThreadClient[] = [];
    let instance: OrtPool | undefined;
    const onDeath = (t: OrtThreadClient): void => instance?.onThreadDeath(t);
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    try {
      for (let i = 0; i < opts.threads; i++) {
        threads.push(new OrtThreadClient(i, opts.name, {
          v: THREAD_PROTOCOL_VERSION, index: i, model, intraOpThreads: opts.intraOpThreads, interOpThreads: opts.interOpThreads, spinning: opts.spinning, nice: opts.nice,
          executionProviders: opts.executionProviders, cpuFallback: opts.cpuFallback,
        }, onDeath));
      }
      const timeout = new Promise<never>((_, rej) => {
        timer = setTimeout(() => { timedOut = true; rej(new BackendError(`model "${opts.name}" did not load and warm up within loadTimeoutMs=${opts.loadTimeoutMs}`)); }, opts.loadTimeoutMs);
      });
      const loadAll = async (): Promise<OrtPool> => {
        const ready = await Promise.all(threads.map((t) => t.whenReady()));
        const first = ready[0]!;
        const fallback = ready.find((r) => r.fallbackReason !== undefined);
        if (fallback !== undefined) {
          opts.logger.warn(`onnx: model "${opts.name}": execution provider ${opts.executionProviders.filter((p) => p !== 'cpu').join(',')} failed to load, falling back to cpu: ${fallback.fallbackReason}`, { model: opts.name, reason: fallback.fallbackReason });
        }
        const priority = ready.find((r) => r.priorityNote !== undefined);
        if (priority !== undefined) opts.logger.warn(`onnx: model "${opts.name}": inference threads keep the event loop's priority (nice ${opts.nice} not applied): ${priority.priorityNote}`, { model: opts.name, reason: priority.priorityNote });
        const m = new OrtPool(opts, threads, first.metadata, first.provider);
        instance = m;
        if (opts.warmup !== undefined) await m.warmUp();
        m.state = 'ready';
        return m;
      };
      const loading = loadAll();
      // Past the timeout nobody awaits `loading`; its later failure (threads disposed under it) is expected.
      loading.catch(() => undefined);
      return await Promise.race([loading, timeout]);
    } catch (err) {
      const cleanup = Promise.all(threads.map((t) => t.dispose(5000)));
      // After a timeout a thread may be stuck loading; clean it up in the background rather than hang here.
      if (!timedOut) await cleanup;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private async warmUp(): Promise<void> {
    const w = this.opts.warmup!;
    const feedsList = w.feeds ?? Array.from({ length: w.runs }, () => generateWarmupFeeds(this.metadata, w));
    for (const feeds of feedsList) validateFeeds(this.opts.name, this.metadata, feeds);
    await Promise.all(this.threads.map(async (t) => {
      for (const feeds of feedsList) {
        try {
          // No transfer: the same warm-up feeds go to every thread.
          await t.run(this.nextId++, feeds, undefined, false);
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          const shapes = Object.entries(feeds).map(([n, f]) => `${n}[${f.dims.join(',')}]`).join(' ');
          throw new BackendError(`warm-up of model "${this.opts.name}" failed on thread ${t.index} with ${shapes}: ${message} (declare sizes with warmup.dims or inputs with warmup.feeds)`);
        }
      }
    }));
  }

  get name(): string { return this.opts.name; }
  get lifecycle(): OrtPoolState { return this.state; }

  /** Runs handed to a thread since load (warm-up excluded). */
  get runs(): number { return this.runsStarted; }

  /** Threads that can take runs now. */
  get liveThreads(): number { return this.threads.filter((t) => t.state === 'ready').length; }

  /** Runs in flight or queued, per thread (dead threads report -1). */
  pendingPerThread(): number[] {
    return this.threads.map((t) => (t.state === 'dead' ? -1 : t.pending.size));
  }

  /** Runs the model once. Rejects with BadRequestError/ShapeMismatchError for bad feeds before any thread sees them. */
  async run(feeds: Feeds, opts: RunOptions = {}): Promise<Feeds> {
    if (this.state !== 'ready') throw new IllegalStateError(`cannot run model "${this.opts.name}": it is ${this.state}`);
    validateFeeds(this.opts.name, this.metadata, feeds, opts.outputs);
    const thread = this.pick();
    this.runsStarted++;
    return thread.run(this.nextId++, feeds, opts.outputs, opts.transfer ?? true);
  }

  private pick(): OrtThreadClient {
    let total = 0;
    let best: OrtThreadClient | undefined;
    const n = this.threads.length;
    // Start the scan after the last pick so ties rotate instead of always landing on thread 0.
    for (let k = 0; k < n; k++) {
      const t = this.threads[(this.rr + k) % n]!;
      if (t.state !== 'ready') continue;
      total += t.pending.size;
      if (best === undefined || t.pending.size < best.pending.size) best = t;
    }
    if (best === undefined) throw new ReplicaUnavailableError(`model "${this.opts.name}" has no live ort thread (all ${n} died)`);
    if (total >= this.opts.maxPending) {
      throw new QueueFullError(`model "${this.opts.name}" queue full: pending=${total}, maxPending=${this.opts.maxPending}`, { pending: total, maxPending: this.opts.maxPending });
    }
    this.rr = (best.index + 1) % n;
    return best;
  }

  private onThreadDeath(t: OrtThreadClient): void {
    if (this.state !== 'ready') return;
    this.opts.logger.warn(`onnx: model "${this.opts.name}": ort thread ${t.index} died; ${this.threads.filter((x) => x.state === 'ready').length} of ${this.threads.length} left`);
  }

  /**
   * Test hook: makes one thread exit with `code` after the runs already sent to it, as a crash between runs would;
   * runs sent to it afterwards reject with PeerGoneError. @internal
   */
  crashThreadForTest(index: number, code = 1): void {
    const t = this.threads[index];
    if (t === undefined) throw new RangeError(`thread index ${index} out of range 0..${this.threads.length - 1}`);
    t.exitForTest(code);
  }

  /**
   * Releases every session and stops the threads. Runs already sent to a thread finish first (the close message
   * queues behind them); a thread that has not exited within `graceMs` is terminated and its runs reject.
   */
  async close(graceMs = 30_000): Promise<void> {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.state = 'closing';
    await Promise.all(this.threads.map((t) => t.close(graceMs)));
    this.state = 'closed';
  }
}
