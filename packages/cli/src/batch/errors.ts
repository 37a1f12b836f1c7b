/**
 * Errors of `shoal batch` and runBatch. Each has a stable `code` and the process exit code the command ends with
 * (docs/batch.md): 2 for a run refused before anything ran (a checkpoint that does not match, an output that
 * would be overwritten, an unknown deployment or method), 3 for a run that stopped part way (a line over the
 * bound, a call that said the whole run cannot go on). Branded with Symbol.for, as shoal's core errors are, so
 * `instanceof` holds across two copies of the package.
 */
const BRAND = Symbol.for('shoal.batch-error');

export type BatchErrorCode =
  /** The checkpoint beside the output was made for another input (or target) than this run's. */
  | 'ERR_BATCH_CHECKPOINT_MISMATCH'
  /** The checkpoint file cannot be read as one, or the output is shorter than the checkpoint says it was. */
  | 'ERR_BATCH_CHECKPOINT_CORRUPT'
  /** --resume without a checkpoint to resume from. */
  | 'ERR_BATCH_NO_CHECKPOINT'
  /** The output exists and no checkpoint says it is unfinished (a finished run): --restart overwrites it. */
  | 'ERR_BATCH_OUTPUT_EXISTS'
  /** An input line is longer than maxLineBytes. */
  | 'ERR_BATCH_LINE_TOO_LONG'
  /** The deployment or method does not exist. */
  | 'ERR_BATCH_UNKNOWN_TARGET'
  /** A call threw BatchAbortError: the run stops (its checkpoint stands). */
  | 'ERR_BATCH_ABORTED';

export class BatchError extends Error {
  /** What the command exits with when this error ends it. */
  readonly exitCode: number;

  constructor(readonly code: BatchErrorCode, message: string, opts: { exitCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.exitCode = opts.exitCode ?? (code === 'ERR_BATCH_LINE_TOO_LONG' || code === 'ERR_BATCH_ABORTED' ? 3 : 2);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    const want = (this.prototype as { [BRAND]?: string })[BRAND];
    for (let p: unknown = Object.getPrototypeOf(value); p !== null && p !== undefined; p = Object.getPrototypeOf(p)) {
      if (Object.prototype.hasOwnProperty.call(p, BRAND) && (p as { [BRAND]: string })[BRAND] === want) return true;
    }
    return false;
  }
}
Object.defineProperty(BatchError.prototype, BRAND, { value: 'BatchError' });

/**
 * Thrown by a batch's call function to stop the whole run rather than fail one line: the line it was called for
 * is not written, and the checkpoint covers the lines before it, so a later run starts there again.
 */
export class BatchAbortError extends BatchError {
  constructor(message: string, opts: { exitCode?: number; cause?: unknown; code?: BatchErrorCode } = {}) {
    super(opts.code ?? 'ERR_BATCH_ABORTED', message, opts);
  }
}
Object.defineProperty(BatchAbortError.prototype, BRAND, { value: 'BatchAbortError' });
