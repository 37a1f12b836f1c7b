/**
 * A batch run's progress on stderr: lines done (of this run and the ones it resumed), lines failed, items per
 * second, and the ETA from the input bytes read against the input's size. On a terminal it is one line redrawn in
 * place (progress.ts's ProgressRenderer); anywhere else a plain line every plainEveryMs and one at the end, so a
 * log file shows the run moving without a line per item.
 */
import { realClock, type Clock } from '@shoal/core';
import { formatBytes, ProgressRenderer, type ProgressStream } from '../progress.ts';

export interface BatchProgressState {
  /** Lines answered or failed in total (a resumed run counts the lines before it). */
  done: number;
  failed: number;
  /** Input bytes read, of `totalBytes`. */
  bytesRead: number;
  totalBytes: number;
  /** Where this run started reading, and how many lines were done before it: rates are this run's own. */
  startBytes: number;
  startDone: number;
  elapsedMs: number;
}

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** "batch 41% [########------------] 12,000 lines (3 failed)  2,400/s  ETA 7s  1.2 MiB of 3.0 MiB". */
export function formatBatchProgress(p: BatchProgressState, opts: { bar?: boolean } = {}): string {
  const fraction = p.totalBytes > 0 ? Math.min(1, p.bytesRead / p.totalBytes) : 1;
  const secs = p.elapsedMs / 1000;
  const rate = secs > 0 ? (p.done - p.startDone) / secs : 0;
  const byteRate = secs > 0 ? (p.bytesRead - p.startBytes) / secs : 0;
  const eta = byteRate > 0 ? duration(((p.totalBytes - p.bytesRead) / byteRate) * 1000) : '-';
  const full = Math.round(fraction * 20);
  const bar = opts.bar === false ? '' : ` [${'#'.repeat(full)}${'-'.repeat(20 - full)}]`;
  return `batch ${Math.floor(fraction * 100)}%${bar} ${p.done.toLocaleString('en-US')} lines${p.failed > 0 ? ` (${p.failed.toLocaleString('en-US')} failed)` : ''}`
    + `  ${rate >= 100 ? Math.round(rate).toLocaleString('en-US') : rate.toFixed(1)}/s  ETA ${eta}  ${formatBytes(p.bytesRead)} of ${formatBytes(p.totalBytes)}`;
}

export interface BatchProgressOptions {
  stream: ProgressStream;
  /** Not a terminal: a plain line this often. @default 10000 */
  plainEveryMs?: number;
  /** Least time between two redraws on a terminal. @default 200 */
  redrawEveryMs?: number;
  clock?: Clock;
}

export class BatchProgress {
  private readonly renderer: ProgressRenderer | undefined;
  private readonly clock: Clock;
  private readonly plainEveryMs: number;
  private readonly redrawEveryMs: number;
  private lastAt = Number.NEGATIVE_INFINITY;
  private last: BatchProgressState | undefined;

  constructor(private readonly opts: BatchProgressOptions) {
    this.clock = opts.clock ?? realClock;
    this.plainEveryMs = opts.plainEveryMs ?? 10_000;
    this.redrawEveryMs = opts.redrawEveryMs ?? 200;
    if (opts.stream.isTTY === true) this.renderer = new ProgressRenderer(opts.stream, { minIntervalMs: this.redrawEveryMs, clock: this.clock });
    // A plain log's first line comes after plainEveryMs, not at once: a short run prints only its final line.
    else this.lastAt = this.clock.monoNow();
  }

  /** Cheap to call per item: formats only when a line is due. */
  update(state: () => BatchProgressState): void {
    const now = this.clock.monoNow();
    if (now - this.lastAt < (this.renderer !== undefined ? this.redrawEveryMs : this.plainEveryMs)) return;
    this.lastAt = now;
    this.draw(state());
  }

  /** The final line. */
  done(state: BatchProgressState): void {
    this.draw(state);
    this.renderer?.done();
  }

  private draw(s: BatchProgressState): void {
    this.last = s;
    if (this.renderer !== undefined) this.renderer.update([{ key: 'batch', text: formatBatchProgress(s) }]);
    else this.opts.stream.write(`${formatBatchProgress(s, { bar: false })}\n`);
  }

  /** The state last drawn (tests). */
  get lastState(): BatchProgressState | undefined {
    return this.last;
  }
}
