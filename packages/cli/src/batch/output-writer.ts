/**
 * Appends to the output file with a bound on what waits in memory: write() queues bytes and says whether the
 * queue is past its high-water mark, drained() resolves once it is back under, writtenUpTo(n) once the first n
 * bytes are in the file (handed to the kernel). One write is in flight at a time, at an explicit position, so the
 * file's length after writtenUpTo(n) is exactly n.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

export interface OutputWriterOptions {
  /** Queued bytes past which write() answers false. @default 4194304 (4 MiB) */
  highWaterBytes?: number;
  /** Most bytes handed to one write(2). @default 8388608 (8 MiB) */
  maxWriteBytes?: number;
}

export class OutputWriter {
  private queue: Buffer[] = [];
  private queuedBytes = 0;
  /** Bytes accepted by write(): where the next one goes. */
  private accepted: number;
  /** Bytes in the file. */
  private written: number;
  private flushing = false;
  private failure: Error | undefined;
  private waiters: Array<{ until: () => boolean; resolve: () => void; reject: (e: Error) => void }> = [];
  private readonly highWaterBytes: number;
  private readonly maxWriteBytes: number;

  private constructor(private readonly fh: FileHandle, length: number, opts: OutputWriterOptions) {
    this.accepted = length;
    this.written = length;
    this.highWaterBytes = opts.highWaterBytes ?? 4 * 1024 * 1024;
    this.maxWriteBytes = opts.maxWriteBytes ?? 8 * 1024 * 1024;
  }

  /** Opens (creating) `path` and cuts it to `length` bytes: what follows is written from there. */
  static async open(path: string, length: number, opts: OutputWriterOptions = {}): Promise<OutputWriter> {
    const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      await fh.truncate(length);
    } catch (err) {
      await fh.close();
      throw err;
    }
    return new OutputWriter(fh, length, opts);
  }

  /** Bytes accepted so far (the output's length once everything is written). */
  get position(): number {
    return this.accepted;
  }

  /** Bytes queued in memory, not yet in the file. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  /** Queues `buf`; false when the queue is past its high-water mark (wait for drained()). */
  write(buf: Buffer): boolean {
    if (this.failure !== undefined) throw this.failure;
    this.queue.push(buf);
    this.queuedBytes += buf.length;
    this.accepted += buf.length;
    if (!this.flushing) void this.flush();
    return this.queuedBytes < this.highWaterBytes;
  }

  drained(): Promise<void> {
    return this.waitUntil(() => this.queuedBytes < this.highWaterBytes);
  }

  /** Resolves once fewer than `n` bytes are queued. */
  pendingBelow(n: number): Promise<void> {
    return this.waitUntil(() => this.queuedBytes < n);
  }

  /** Resolves once the file holds the first `n` bytes. */
  writtenUpTo(n: number): Promise<void> {
    return this.waitUntil(() => this.written >= n);
  }

  /** Flushes the file's data to the disk (fdatasync). */
  async sync(): Promise<void> {
    await this.fh.datasync();
  }

  /** Writes what is queued, syncs and closes. */
  async close(): Promise<void> {
    try {
      await this.writtenUpTo(this.accepted);
      await this.fh.datasync();
    } finally {
      await this.fh.close();
    }
  }

  private waitUntil(until: () => boolean): Promise<void> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (until()) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ until, resolve, reject }));
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        let take = 0;
        let bytes = 0;
        while (take < this.queue.length && (take === 0 || bytes + this.queue[take]!.length <= this.maxWriteBytes)) bytes += this.queue[take++]!.length;
        const parts = this.queue.splice(0, take);
        const buf = parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
        let off = 0;
        while (off < buf.length) {
          const { bytesWritten } = await this.fh.write(buf, off, buf.length - off, this.written);
          off += bytesWritten;
          this.written += bytesWritten;
        }
        this.queuedBytes -= bytes;
        this.notify();
      }
    } catch (err) {
      this.failure = err as Error;
      for (const w of this.waiters.splice(0)) w.reject(this.failure);
    } finally {
      this.flushing = false;
    }
  }

  private notify(): void {
    if (this.waiters.length === 0) return;
    const still: typeof this.waiters = [];
    for (const w of this.waiters) if (w.until()) w.resolve(); else still.push(w);
    this.waiters = still;
  }
}
