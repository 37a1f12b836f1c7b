/**
 * The consumer loop of one source in one worker: pulls as many messages as it has free slots (concurrency), calls
 * the deployment once per message, and settles each one way: the answer written and the message acknowledged;
 * a dead letter (the payload's fault, a 4xx, at once; any other failure once it was delivered maxDeliveries
 * times); or released, unacknowledged, for redelivery. At least once, and the source writes one answer per
 * idempotency key, so the output holds each message's answer once.
 */
import { toWireError, type ConsumeEncoding, type Logger } from '@shoal/core';
import { decodePayload, encodeAnswer } from './codec.ts';
import { SourceConfigError, SourceGoneError, type BrokerMessage, type DeadLetterReason, type Source } from './source.ts';

/** What became of one message: SettleResult, or 'failed' (released for redelivery, or the broker refused the settle). */
export type MessageResult = 'answered' | 'duplicate' | 'dead_lettered' | 'failed';
export const MESSAGE_RESULTS: readonly MessageResult[] = ['answered', 'duplicate', 'dead_lettered', 'failed'];

/** Where a consumer reports each message's outcome (the worker's metrics). */
export interface ConsumerObserver {
  settled(result: MessageResult): void;
}

export type ConsumerState = 'idle' | 'running' | 'stopping' | 'stopped';

export interface ConsumerOptions {
  source: Source;
  /** Messages in flight at once. */
  concurrency: number;
  maxDeliveries: number;
  encoding: ConsumeEncoding;
  /** Calls the deployment with the decoded payload; the signal aborts when a stop gives up waiting. */
  call: (arg: unknown, signal: AbortSignal) => Promise<unknown>;
  logger: Logger;
  observer?: ConsumerObserver;
  /** How often the source's lag is sampled. @default 1000 */
  lagIntervalMs?: number;
  /**
   * Whether the deployment has a running replica. While it has none, one message at a time is taken: its call
   * waits for a replica (and makes the demand known, as a request to a scaled-to-zero deployment does) rather
   * than many calls using up deliveries. @default always ready
   */
  ready?: () => boolean;
  /**
   * The method called, and the option that names it (`consume[0].redis.method`), for the warning a call to a
   * method the deployment does not have logs. @default 'call', 'consume.method'
   */
  method?: string;
  methodOption?: string;
  /**
   * While the deployment has no such method, how long the consumer pauses its pulls, and how often the messages
   * it holds try the call again. @default 5000
   */
  methodRetryMs?: number;
}

/** One warning per this many ms at most, per kind: a broker that is down, or poison messages, must not flood the log. */
const LOG_EVERY_MS = 10_000;
const MAX_BACKOFF_MS = 5000;

/** 4xx is the caller's (the payload's) fault, so no redelivery can help; but not a timeout, a rate limit or a cancel. */
function callerFault(status: number | undefined): boolean {
  return status !== undefined && status >= 400 && status < 500 && status !== 408 && status !== 429 && status !== 499;
}

/**
 * The NotFoundError of a call to a method the deployment does not have (packages/worker/src/replica.ts words it
 * `deployment "a/d" has no method "m" (it has: x, y)`): the operator's mistake (a wrong or default `method`), not
 * the payload's, so no message is dead-lettered for it. The methods it has, or undefined when it is not that error.
 */
function missingMethod(status: number | undefined, message: string, method: string): string | undefined {
  if (status !== 404 || !message.includes(`has no method "${method}"`)) return undefined;
  return /\(it has: ([^)]*)\)/.exec(message)?.[1] ?? 'unknown';
}

export class Consumer {
  private readonly o: ConsumerOptions;
  /** The messages being called (pulled, not settled): what keepAlive tells the broker about. */
  private readonly held = new Set<BrokerMessage>();
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private keepingAlive = false;
  /** No pull before this (performance.now()): set while the deployment lacks the method. */
  private pausedUntil = 0;
  private stateNow: ConsumerState = 'idle';
  private started = false;
  private inflightNow = 0;
  private readonly controllers = new Set<AbortController>();
  private slotWaiter: (() => void) | undefined;
  private idleWaiter: (() => void) | undefined;
  private sleeper: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  private loopDone: Promise<void> = Promise.resolve();
  private lagTimer: NodeJS.Timeout | undefined;
  private lagNow: number | undefined;
  private sampling = false;
  private readonly lastLog = new Map<string, number>();

  constructor(opts: ConsumerOptions) {
    this.o = opts;
  }

  get name(): string { return this.o.source.name; }
  get state(): ConsumerState { return this.stateNow; }
  /** Messages taken and not yet settled. */
  get inflight(): number { return this.inflightNow; }
  /** The last lag sampled; undefined before the first sample (or while the broker cannot be reached). */
  get lag(): number | undefined { return this.lagNow; }

  start(): void {
    if (this.stateNow !== 'idle') throw new Error(`consumer ${this.name} cannot start: it is ${this.stateNow}`);
    this.stateNow = 'running';
    this.loopDone = this.loop();
    this.lagTimer = setInterval(() => this.sampleLag(), this.o.lagIntervalMs ?? 1000);
    this.lagTimer.unref();
    const every = this.o.source.keepAliveMs;
    if (this.o.source.keepAlive !== undefined && every !== undefined) {
      this.keepAliveTimer = setInterval(() => this.keepAlive(), Math.max(1, every));
      this.keepAliveTimer.unref();
    }
  }

  /** One keepAlive at a time for every message held; a failure only logs (the broker may be away a moment). */
  private keepAlive(): void {
    if (this.held.size === 0 || this.keepingAlive || this.o.source.keepAlive === undefined) return;
    this.keepingAlive = true;
    this.o.source.keepAlive([...this.held]).catch((err: unknown) => {
      this.warn('keepalive', 'broker consumer could not tell the broker its messages are still being worked on; a slow one may be delivered again', { source: this.name, held: this.held.size, error: (err as Error).message });
    }).finally(() => { this.keepingAlive = false; });
  }

  /**
   * Stops pulling, waits up to drainMs for the messages in flight to settle, then aborts the calls still running
   * (their messages are released, so another worker takes them), and disconnects.
   */
  async stop(drainMs: number): Promise<void> {
    if (this.stateNow === 'stopped' || this.stateNow === 'stopping') return;
    const wasRunning = this.stateNow === 'running';
    this.stateNow = 'stopping';
    clearInterval(this.lagTimer);
    if (this.sleeper !== undefined) { clearTimeout(this.sleeper.timer); this.sleeper.resolve(); }
    this.slotWaiter?.();
    if (wasRunning) {
      const end = performance.now() + drainMs;
      await this.within(this.loopDone, drainMs);
      if (this.inflightNow > 0) await this.within(new Promise<void>((r) => { this.idleWaiter = r; }), Math.max(0, end - performance.now()));
      if (this.inflightNow > 0) {
        this.o.logger.warn('broker consumer stopping: handing back the messages still in flight', { source: this.name, inflight: this.inflightNow });
        for (const c of this.controllers) c.abort(new Error('the worker is stopping'));
        // Released or answered now (the call rejects at once); a settle stuck on a broker that is away is cut by close().
        await this.within(new Promise<void>((r) => { this.idleWaiter = r; }), 2000);
      }
    }
    clearInterval(this.keepAliveTimer);
    await this.o.source.close().catch(() => undefined);
    this.stateNow = 'stopped';
  }

  private async loop(): Promise<void> {
    const { source, concurrency } = this.o;
    let backoff = 100;
    while (this.stateNow === 'running') {
      try {
        if (!this.started) {
          await source.start();
          this.started = true;
          this.o.logger.info('broker consumer started', { source: this.name, concurrency });
          this.sampleLag();
        }
        const pause = this.pausedUntil - performance.now();
        if (pause > 0) {
          // The deployment lacks the method: the messages held retry it; no new ones are taken meanwhile.
          await this.sleep(pause);
          continue;
        }
        const cap = this.o.ready === undefined || this.o.ready() ? concurrency : 1;
        if (this.inflightNow >= cap) {
          // Woken by a settle; when held to one message for want of a replica, also to look again soon.
          await new Promise<void>((r) => {
            this.slotWaiter = r;
            if (cap < concurrency) setTimeout(r, 100);
          });
          this.slotWaiter = undefined;
          continue;
        }
        const batch = await source.pull(cap - this.inflightNow);
        if (this.stateNow !== 'running') {
          // Taken while the stop began: hand them back rather than start them.
          await Promise.all(batch.map((m) => source.release(m).catch(() => undefined)));
          break;
        }
        for (const m of batch) void this.process(m);
        backoff = 100;
      } catch (err) {
        if (err instanceof SourceGoneError) {
          // start() again on the next turn: it creates the group / durable consumer anew.
          this.started = false;
          this.warn('gone', 'broker consumer lost its consumer group or durable consumer; creating it again', { source: this.name, error: err.message, retryInMs: backoff });
        } else if (err instanceof SourceConfigError) {
          this.warn('config', 'broker consumer cannot start: the broker is not set up for its options', { source: this.name, error: err.message, retryInMs: backoff });
        } else {
          this.warn('broker', 'broker consumer cannot reach its broker; retrying', { source: this.name, error: (err as Error).message, retryInMs: backoff });
        }
        await this.sleep(backoff);
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
      }
    }
  }

  private async process(m: BrokerMessage): Promise<void> {
    this.inflightNow++;
    const controller = new AbortController();
    this.controllers.add(controller);
    this.held.add(m);
    let result: MessageResult;
    try {
      result = await this.settle(m, controller.signal);
    } catch (err) {
      // The broker refused the settle (down, or the connection dropped): the message stays pending and is
      // delivered again; its answer, if written, is not written twice.
      result = 'failed';
      this.warn('settle', 'broker consumer could not settle a message; it will be delivered again', { source: this.name, message: m.id, error: (err as Error).message });
      await this.o.source.release(m).catch(() => undefined);
    } finally {
      this.held.delete(m);
      this.controllers.delete(controller);
      this.inflightNow--;
      this.slotWaiter?.();
      if (this.inflightNow === 0) this.idleWaiter?.();
    }
    this.o.observer?.settled(result);
  }

  private async settle(m: BrokerMessage, signal: AbortSignal): Promise<MessageResult> {
    const { source, maxDeliveries } = this.o;
    if (m.malformed !== undefined) return await this.deadLetter(m, { code: 'ERR_BAD_REQUEST', message: m.malformed });
    if (m.deliveryCount > maxDeliveries) {
      return await this.deadLetter(m, {
        code: 'ERR_MAX_DELIVERIES',
        message: `delivered ${m.deliveryCount} times, past maxDeliveries (${maxDeliveries}), without an answer: its calls failed or its workers died`,
      });
    }
    let value: unknown;
    try {
      value = await this.callUntilMethod(m, signal);
    } catch (err) {
      const wire = toWireError(err);
      if (signal.aborted && missingMethod(wire.httpStatus, wire.message, this.o.method ?? 'call') !== undefined) {
        await source.release(m);
        return 'failed';
      }
      if (callerFault(wire.httpStatus)) return await this.deadLetter(m, { code: wire.code, message: wire.message });
      if (m.deliveryCount >= maxDeliveries && !signal.aborted) {
        return await this.deadLetter(m, { code: wire.code, message: `${wire.message} (delivery ${m.deliveryCount} of maxDeliveries ${maxDeliveries})` });
      }
      await source.release(m);
      return 'failed';
    }
    let bytes: Uint8Array;
    try {
      bytes = encodeAnswer(this.o.encoding, value);
    } catch (err) {
      return await this.deadLetter(m, { code: 'ERR_ENCODE', message: `the answer cannot be written as JSON: ${(err as Error).message}` });
    }
    return await source.answer(m, bytes);
  }

  /**
   * The call; while it fails because the deployment has no such method, the message is kept (keepAlive goes on,
   * so it is neither redelivered nor dead-lettered, and uses up no delivery: a release would count one, in
   * JetStream at least), pulls pause, and the call is tried again every methodRetryMs, until a deploy adds the
   * method, a changed `method` replaces this consumer, or a stop releases the message.
   */
  private async callUntilMethod(m: BrokerMessage, signal: AbortSignal): Promise<unknown> {
    const arg = decodePayload(this.o.encoding, m.payload);
    const method = this.o.method ?? 'call';
    const every = this.o.methodRetryMs ?? 5000;
    for (;;) {
      try {
        return await this.o.call(arg, signal);
      } catch (err) {
        const wire = toWireError(err);
        const has = missingMethod(wire.httpStatus, wire.message, method);
        if (has === undefined || signal.aborted) throw err;
        this.pausedUntil = Math.max(this.pausedUntil, performance.now() + every);
        this.warn('method', `broker consumer: the deployment has no method "${method}"; fix ${this.o.methodOption ?? 'consume.method'}. Its messages wait (not dead-lettered) and pulls pause until it has`, {
          source: this.name, option: this.o.methodOption ?? 'consume.method', method, has, held: this.held.size, retryInMs: every,
        });
        await this.abortableSleep(every, signal);
        if (signal.aborted) throw err;
      }
    }
  }

  private abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => { clearTimeout(timer); signal.removeEventListener('abort', done); resolve(); };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done);
    });
  }

  private async deadLetter(m: BrokerMessage, reason: DeadLetterReason): Promise<MessageResult> {
    const r = await this.o.source.deadLetter(m, reason);
    if (r === 'dead_lettered') this.warn('dead', 'broker message dead-lettered', { source: this.name, message: m.id, key: m.key, code: reason.code, error: reason.message, deliveries: m.deliveryCount });
    return r;
  }

  private sampleLag(): void {
    if (!this.started || this.sampling || this.stateNow !== 'running') return;
    this.sampling = true;
    this.o.source.lag().then(
      (n) => { this.lagNow = n; },
      () => { this.lagNow = undefined; },
    ).finally(() => { this.sampling = false; });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.sleeper = undefined; resolve(); }, ms);
      this.sleeper = { timer, resolve };
    });
  }

  private async within(p: Promise<void>, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([p, new Promise<void>((r) => { timer = setTimeout(r, ms); })]);
    clearTimeout(timer);
  }

  private warn(kind: string, msg: string, fields: Record<string, unknown>): void {
    const now = Date.now();
    if (now - (this.lastLog.get(kind) ?? Number.NEGATIVE_INFINITY) < LOG_EVERY_MS) return;
    this.lastLog.set(kind, now);
    this.o.logger.warn(msg, fields);
  }
}
