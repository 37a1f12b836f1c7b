/**
 * A retry budget, as Envoy's: retries may add at most `ratio` of the recent request rate, plus a small floor so a
 * quiet deployment can still retry. Past it a failed request fails instead of retrying, so a cluster that is
 * failing everything does not also multiply its load (a retry storm).
 *
 *   const budget = new RetryBudget(clock);
 *   budget.request();                 // every first attempt
 *   if (budget.tryRetry()) retry();   // each retry takes one
 */
import type { Clock } from './clock.ts';
import { InvalidOptionError } from './errors.ts';
import { checkNumber } from './options.ts';

export interface RetryBudgetOptions {
  /** Retries allowed per first attempt over the window. @default 0.2 */
  ratio?: number;
  /** Retries always allowed per window, whatever the request rate. @default 10 */
  minRetries?: number;
  /** The window counted over, in ms. @default 10000 */
  windowMs?: number;
}

/** Counts in slots of windowMs/10, so the window slides without keeping a timestamp per request. */
const SLOTS = 10;

export class RetryBudget {
  private readonly ratio: number;
  private readonly minRetries: number;
  private readonly slotMs: number;
  private readonly requests = new Array<number>(SLOTS).fill(0);
  private readonly retries = new Array<number>(SLOTS).fill(0);
  private slotAt = 0;
  private slot = 0;
  private refusedCount = 0;

  constructor(private readonly clock: Clock, opts: RetryBudgetOptions = {}) {
    this.ratio = checkNumber('retryBudget.ratio', opts.ratio, 0, 0.2);
    this.minRetries = checkNumber('retryBudget.minRetries', opts.minRetries, 0, 10);
    const windowMs = checkNumber('retryBudget.windowMs', opts.windowMs, 0, 10_000);
    if (windowMs < SLOTS) throw new InvalidOptionError('retryBudget.windowMs', `must be at least ${SLOTS} ms`, windowMs);
    this.slotMs = windowMs / SLOTS;
    this.slotAt = clock.monoNow();
  }

  /** Retries refused for want of budget, since the start. */
  get refused(): number { return this.refusedCount; }

  request(): void {
    this.advance();
    this.requests[this.slot]!++;
  }

  /** True (and the retry counted) when the budget has room for one more retry. */
  tryRetry(): boolean {
    this.advance();
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < SLOTS; i++) { requests += this.requests[i]!; retries += this.retries[i]!; }
    if (retries >= this.minRetries + this.ratio * requests) { this.refusedCount++; return false; }
    this.retries[this.slot]!++;
    return true;
  }

  private advance(): void {
    const now = this.clock.monoNow();
    let steps = Math.floor((now - this.slotAt) / this.slotMs);
    if (steps <= 0) return;
    this.slotAt += steps * this.slotMs;
    if (steps > SLOTS) steps = SLOTS;
    for (let i = 0; i < steps; i++) {
      this.slot = (this.slot + 1) % SLOTS;
      this.requests[this.slot] = 0;
      this.retries[this.slot] = 0;
    }
  }
}
