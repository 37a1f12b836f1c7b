/**
 * One cascade request: ask the small model, keep its answer when confident, otherwise ask the large one; sample
 * confident answers for a background audit against the large model. Transport-free: it calls two handles (real
 * ones in a replica, fakes in tests) and reports what happened to a CascadeObserver.
 */
import { contextStorage, requestContext } from '../context.ts';
import type { CallOptions } from '../deployment.ts';
import { NotFoundError } from '../errors.ts';
import type { CompiledCascadeOptions, EscalationReason } from './options.ts';
import type { CascadeModel, CascadeObserver, CascadeStats } from './stats.ts';

/** What a handle looks like to the runner: the cascade's method, and withOptions. */
export interface CascadeModelHandle {
  withOptions(opts: CallOptions): CascadeModelHandle;
  readonly [method: string]: unknown;
}

/** The outcome of one cascade call; the generated method returns `answer`, or this whole object with `envelope`. */
export interface CascadeAnswer<R = unknown> {
  answer: R;
  /** The model whose answer this is. */
  model: CascadeModel;
  /** The small model's confidence, or null when it failed or gave an invalid one. */
  confidence: number | null;
  /** Why the large model was asked, or null when the small answer was kept. */
  escalation: EscalationReason | null;
}

/**
 * Batch priority of audit calls: below a request's default 0, so a batched large model serves callers before
 * audits whenever both wait.
 */
export const AUDIT_PRIORITY = -1;

export class CascadeRunner {
  private inflight = 0;
  private readonly smallHandle: CascadeModelHandle;
  private readonly auditHandle: CascadeModelHandle;
  private readonly closing = new AbortController();

  constructor(
    private readonly o: CompiledCascadeOptions,
    small: CascadeModelHandle,
    private readonly large: CascadeModelHandle,
    private readonly stats: CascadeStats,
    private readonly observer: CascadeObserver,
  ) {
    this.smallHandle = o.smallTimeoutMs > 0 ? small.withOptions({ timeoutMs: o.smallTimeoutMs }) : small;
    this.auditHandle = large.withOptions({ timeoutMs: o.auditTimeoutMs, priority: AUDIT_PRIORITY, signal: this.closing.signal });
  }

  /** Audits running now. */
  get inflightAudits(): number { return this.inflight; }

  async run(args: unknown[]): Promise<CascadeAnswer> {
    const { clock } = this.o;
    const start = clock.monoNow();
    this.observer.request();
    let small: unknown;
    let reason: EscalationReason | undefined;
    let confidence: number | null = null;
    try {
      small = await this.call(this.smallHandle, args);
      this.observer.modelCall('small', 'serve', clock.monoNow() - start, true);
    } catch (err) {
      this.observer.modelCall('small', 'serve', clock.monoNow() - start, false);
      if (this.o.onSmallError === 'fail' || callerGone(clock.wallNow())) {
        this.observer.failed('small', clock.monoNow() - start);
        throw err;
      }
      reason = 'small_error';
    }
    if (reason === undefined) {
      confidence = this.confidenceOf(small, args);
      if (confidence === null) reason = 'invalid_confidence';
      else if (confidence < this.o.threshold) reason = 'low_confidence';
    }
    if (reason === undefined) {
      const waited = clock.monoNow() - start;
      this.observer.answered('small', waited);
      const mean = this.stats.largeMeanMs();
      if (mean === undefined) this.observer.latency(0, 0, false);
      else this.observer.latency(Math.max(0, mean - waited), Math.max(0, waited - mean), true);
      this.maybeAudit(small, args);
      return { answer: small, model: 'small', confidence, escalation: null };
    }
    this.observer.escalated(reason);
    const largeStart = clock.monoNow();
    let large: unknown;
    try {
      large = await this.call(this.large, args);
    } catch (err) {
      this.observer.modelCall('large', 'serve', clock.monoNow() - largeStart, false);
      this.observer.failed('large', clock.monoNow() - start);
      throw err;
    }
    const end = clock.monoNow();
    this.observer.modelCall('large', 'serve', end - largeStart, true);
    this.observer.answered('large', end - start);
    // Against asking the large model straight away, the caller waited for the small model (and the decision) too.
    this.observer.latency(0, Math.max(0, largeStart - start), true);
    if (reason === 'low_confidence') this.compareEscalated(small, large, args);
    return { answer: large, model: 'large', confidence, escalation: reason };
  }

  /** Stops taking audits and cancels those running (the replica is stopping). */
  close(): void {
    this.closing.abort();
  }

  private call(handle: CascadeModelHandle, args: unknown[]): Promise<unknown> {
    const fn = handle[this.o.method];
    if (typeof fn !== 'function') return Promise.reject(new NotFoundError(`the cascade's model handle has no method "${this.o.method}"`));
    return Promise.resolve(fn.apply(handle, args) as unknown);
  }

  /** The confidence, or null when confidence() threw or gave anything but a number within confidenceRange. */
  private confidenceOf(answer: unknown, args: unknown[]): number | null {
    let c: unknown;
    try {
      c = this.o.confidence(answer, ...args);
    } catch (err) {
      this.stats.invalidConfidence(`confidence() threw: ${(err as Error)?.message ?? String(err)}`);
      return null;
    }
    const [min, max] = this.o.confidenceRange;
    if (typeof c === 'number' && c >= min && c <= max) return c;
    this.stats.invalidConfidence(`confidence() returned ${typeof c === 'number' ? c : typeof c}, outside [${min}, ${max}]`);
    return null;
  }

  private compareEscalated(small: unknown, large: unknown, args: unknown[]): void {
    const agree = this.o.agree;
    if (agree === undefined) return;
    // A bookkeeping comparison must never fail the caller's request: a throwing agree() counts nothing.
    try { this.observer.escalationAgreement(agree(small, large, ...args) === true); } catch { /* not counted */ }
  }

  private maybeAudit(small: unknown, args: unknown[]): void {
    const rate = this.o.auditSampleRate;
    if (rate === 0 || this.closing.signal.aborted || !(this.o.random() < rate)) return;
    if (this.inflight >= this.o.maxConcurrentAudits) { this.observer.audit('busy'); return; }
    this.inflight++;
    // The one thing of the caller's request the audit keeps: which model a multiplexed large deployment serves it with.
    const modelId = requestContext()?.modelId;
    const handle = modelId === undefined ? this.auditHandle : this.auditHandle.withOptions({ modelId });
    // Outside the caller's context (no inherited deadline, signal or priority), and after the caller's answer is on
    // its way: setImmediate runs once every promise callback queued so far, the reply's included, has run.
    contextStorage.exit(() => setImmediate(() => { void this.audit(handle, small, args); }));
  }

  private async audit(handle: CascadeModelHandle, small: unknown, args: unknown[]): Promise<void> {
    const { clock } = this.o;
    const start = clock.monoNow();
    try {
      let large: unknown;
      try {
        large = await this.call(handle, args);
      } catch {
        this.observer.modelCall('large', 'audit', clock.monoNow() - start, false);
        this.observer.audit('error');
        return;
      }
      this.observer.modelCall('large', 'audit', clock.monoNow() - start, true);
      let agreed: boolean;
      try { agreed = this.o.agree!(small, large, ...args) === true; } catch { this.observer.audit('error'); return; }
      this.observer.audit(agreed ? 'agree' : 'disagree');
    } finally {
      this.inflight--;
    }
  }
}

/** Whether the request being served was cancelled or is past its deadline: asking the large model is no use then. */
function callerGone(wallNow: number): boolean {
  const ctx = requestContext();
  if (ctx === undefined) return false;
  if (ctx.deadline !== undefined && wallNow >= ctx.deadline) return true;
  return ctx.signal.aborted;
}
