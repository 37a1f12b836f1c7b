/**
 * A NATS JetStream stream read by a durable pull consumer (explicit acks, ack_wait, max_deliver) that every
 * worker shares. An answer is published to the output subject with Nats-Msg-Id = the idempotency key, so the
 * output stream's duplicate window drops a second answer for a redelivered message (the publish ack says
 * `duplicate`); the input message is acknowledged (and the acknowledgement confirmed) only after that publish.
 * Messages are pulled with fetch requests no larger than the consumer loop's free slots, so no more than
 * `concurrency` are ever delivered to this client at once (none waits in a client buffer while its ack_wait runs).
 */
import { createRequire } from 'node:module';
import type { Consumer as JsConsumer, ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg, NatsConnection } from 'nats';
import type { CompiledNatsConsume, Logger } from '@shoal/core';
import { SourceConfigError, SourceGoneError, type BrokerMessage, type DeadLetterReason, type Source } from './source.ts';

/** The nats client, loaded on first use: a process that consumes no JetStream stream does not pay for its ~65 modules. */
let natsLoaded: typeof import('nats') | undefined;
function nats(): typeof import('nats') {
  return natsLoaded ??= createRequire(import.meta.url)('nats') as typeof import('nats');
}

/** How long pull() waits for a first message. */
const PULL_WAIT_MS = 1000;
/** How long one fetch request stays open at the server (nats.js takes no less than 1 s). */
const FETCH_EXPIRES_MS = 1000;

/** The JetStream API error code, or the status code of a pull (409 consumer deleted, 503 no responders). */
function errorCode(err: unknown): string {
  const e = err as { api_error?: { err_code?: number }; code?: string };
  return String(e?.api_error?.err_code ?? e?.code ?? '');
}

/**
 * The durable consumer is gone: 10014 / "consumer not found" (an info or a get), 409 "consumer deleted" (a pull
 * open when it was deleted), 503 no responders (a pull to a consumer, or a stream, that no longer exists).
 */
function gone(err: unknown, what: string): unknown {
  const msg = String((err as Error)?.message ?? err).toLowerCase();
  const code = errorCode(err);
  if (code === '10014' || code === '409' || code === '503' || msg.includes('consumer not found') || msg.includes('consumer deleted') || msg.includes('no responders')) {
    return new SourceGoneError(`${what} is gone (${(err as Error)?.message ?? String(err)})`);
  }
  return err;
}
/** The longest delay of a nak (a failed call's redelivery), doubling from 250 ms per delivery. */
const MAX_NAK_DELAY_MS = 5000;

export interface JetStreamSourceOptions {
  options: CompiledNatsConsume;
  /** This worker's name (the connection's name, for `nats server report connections`). */
  consumer: string;
  logger: Logger;
  /** The entry's option path (`app/d consume.nats`), in the errors of a broker not set up for it. @default 'consume.nats' */
  path?: string;
}

type Next = Promise<IteratorResult<JsMsg>>;

export class JetStreamSource implements Source {
  readonly name: string;
  private readonly o: CompiledNatsConsume;
  private readonly consumerName: string;
  private readonly logger: Logger;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private readonly path: string;
  private consumer: JsConsumer | undefined;
  /** The fetch request open at the server: it delivers no more than the free slots it was sized to. */
  private messages: ConsumerMessages | undefined;
  private iterator: AsyncIterator<JsMsg> | undefined;
  /** A next() that a pull gave up waiting on: the following pull takes its message. */
  private pendingNext: Next | undefined;
  private readonly raw = new WeakMap<BrokerMessage, JsMsg>();
  private warnedWindow = false;
  /** A third of ackWaitMs: a message being called gets a +WPI before its ack_wait runs out. */
  readonly keepAliveMs: number;

  constructor(opts: JetStreamSourceOptions) {
    this.o = opts.options;
    this.name = opts.options.name;
    this.consumerName = opts.consumer;
    this.logger = opts.logger;
    this.path = opts.path ?? 'consume.nats';
    this.keepAliveMs = Math.max(1, Math.floor(this.o.ackWaitMs / 3));
  }

  /** Again after a failure or a SourceGoneError (the consumer loop retries start): what was pulled through is dropped. */
  async start(): Promise<void> {
    this.dropFetch();
    this.consumer = undefined;
    // A connection made stays, and reconnects by itself.
    this.nc ??= await nats().connect({ servers: this.o.servers, name: `shoal-broker:${this.consumerName}`, maxReconnectAttempts: -1 });
    this.jsm = await this.nc.jetstreamManager();
    this.js = this.nc.jetstream();
    await this.checkStreams(this.jsm);
    const config = {
      ack_policy: nats().AckPolicy.Explicit,
      ack_wait: nats().nanos(this.o.ackWaitMs),
      // One delivery more than maxDeliveries: a message whose every attempt killed its worker gets one last
      // delivery, which dead-letters it without calling.
      max_deliver: this.o.maxDeliveries + 1,
    };
    try {
      await this.jsm.consumers.add(this.o.stream, {
        durable_name: this.o.durable, deliver_policy: nats().DeliverPolicy.All, ...config,
        ...(this.o.subject !== undefined ? { filter_subject: this.o.subject } : {}),
      });
    } catch (err) {
      // It exists with another configuration (an earlier deploy): take the new limits where the server allows.
      const existing = await this.jsm.consumers.info(this.o.stream, this.o.durable).catch(() => undefined);
      if (existing === undefined) throw err;
      await this.jsm.consumers.update(this.o.stream, this.o.durable, config).catch((e: unknown) => {
        this.logger.warn('the durable consumer exists with other settings, which the server would not update; using it as it is', { source: this.name, durable: this.o.durable, error: (e as Error).message });
      });
    }
  }

  /**
   * The input stream exists, and a stream captures `output` and `deadLetter` (else their publishes fail, or, with
   * no stream, are dropped); warns once when the output stream's duplicate window is shorter than the longest time
   * a message can take from its first delivery to its last answer, past which a second answer would be kept.
   */
  private async checkStreams(jsm: JetStreamManager): Promise<void> {
    try {
      await jsm.streams.info(this.o.stream);
    } catch (err) {
      if (errorCode(err) !== '10059' && !/stream not found/i.test((err as Error).message)) throw err;
      throw new SourceConfigError(`${this.path}.stream: JetStream has no stream "${this.o.stream}" (create it, e.g. \`nats stream add ${this.o.stream} --subjects ...\`)`);
    }
    for (const [option, subject] of [['output', this.o.output], ['deadLetter', this.o.deadLetter]] as const) {
      let stream: string;
      try {
        stream = await jsm.streams.find(subject);
      } catch (err) {
        if (!/no stream matches subject/i.test((err as Error).message)) throw err;
        throw new SourceConfigError(`${this.path}.${option}: no JetStream stream captures the subject "${subject}" (add it to a stream's subjects, e.g. \`nats stream add OUT --subjects '${subject}'\`)`);
      }
      if (option !== 'output' || this.warnedWindow) continue;
      const windowMs = nats().millis((await jsm.streams.info(stream)).config.duplicate_window ?? 0);
      const neededMs = this.o.ackWaitMs * (this.o.maxDeliveries + 1) + this.o.timeoutMs;
      if (windowMs < neededMs) {
        this.warnedWindow = true;
        this.logger.warn(`the stream capturing ${this.path}.output has a duplicate_window shorter than ackWaitMs x (maxDeliveries + 1) + timeoutMs: a late redelivery could write a second answer`, {
          source: this.name, stream, subject, duplicateWindowMs: windowMs, neededMs, ackWaitMs: this.o.ackWaitMs, maxDeliveries: this.o.maxDeliveries, timeoutMs: this.o.timeoutMs,
        });
      }
    }
  }

  /**
   * Up to `max` messages. A fetch request is sized to `max` (the loop's free slots) and read across pulls until
   * it ends (filled, or expired after FETCH_EXPIRES_MS); only then is the next one sent, so the messages delivered
   * and not settled never exceed the free slots the request was made for.
   */
  async pull(max: number): Promise<BrokerMessage[]> {
    try {
      return await this.pullOnce(max);
    } catch (err) {
      this.dropFetch();
      throw gone(err, `the durable consumer "${this.o.durable}" (${this.path}.durable) of stream "${this.o.stream}" (${this.path}.stream)`);
    }
  }

  private async pullOnce(max: number): Promise<BrokerMessage[]> {
    const it = await this.openFetch(max);
    const out: BrokerMessage[] = [];
    let timer: NodeJS.Timeout | undefined;
    const first = this.pendingNext ?? it.next();
    this.pendingNext = undefined;
    const waited = await Promise.race([first, new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), PULL_WAIT_MS); })]);
    clearTimeout(timer);
    if (waited === 'timeout') { this.keep(first); return out; }
    if (waited.done === true) { this.dropFetch(); return out; }
    out.push(this.wrap(waited.value));
    // Then whatever has already arrived, without waiting for more.
    while (out.length < max) {
      const next = it.next();
      const r = await Promise.race([next, new Promise<'empty'>((resolve) => setImmediate(() => resolve('empty')))]);
      if (r === 'empty') { this.keep(next); break; }
      if (r.done === true) { this.dropFetch(); break; }
      out.push(this.wrap(r.value));
    }
    return out;
  }

  /** A next() kept for the following pull: handled now, so a fetch that fails meanwhile is no unhandled rejection. */
  private keep(next: Next): void {
    next.catch(() => undefined);
    this.pendingNext = next;
  }

  private async openFetch(max: number): Promise<AsyncIterator<JsMsg>> {
    if (this.iterator !== undefined) return this.iterator;
    if (this.js === undefined) throw new Error(`source ${this.name} is not started`);
    this.consumer ??= await this.js.consumers.get(this.o.stream, this.o.durable);
    this.messages = await this.consumer.fetch({ max_messages: max, expires: FETCH_EXPIRES_MS });
    this.iterator = this.messages[Symbol.asyncIterator]();
    return this.iterator;
  }

  private dropFetch(): void {
    this.messages?.stop();
    this.messages = undefined;
    this.iterator = undefined;
    this.pendingNext = undefined;
  }

  /** +WPI for each message being called: its ack_wait starts over, and no delivery is counted. */
  async keepAlive(messages: readonly BrokerMessage[]): Promise<void> {
    for (const m of messages) this.raw.get(m)?.working();
  }

  private wrap(jm: JsMsg): BrokerMessage {
    const producerKey = jm.headers?.get('Nats-Msg-Id');
    const m: BrokerMessage = {
      key: producerKey !== undefined && producerKey !== '' ? producerKey : `${this.o.stream}:${jm.seq}`,
      id: String(jm.seq),
      payload: jm.data,
      deliveryCount: jm.info.deliveryCount,
    };
    this.raw.set(m, jm);
    return m;
  }

  private jsMsg(m: BrokerMessage): JsMsg {
    const jm = this.raw.get(m);
    if (jm === undefined) throw new Error(`message ${m.id} was not pulled from source ${this.name}`);
    return jm;
  }

  async answer(m: BrokerMessage, value: Uint8Array): Promise<'answered' | 'duplicate'> {
    const jm = this.jsMsg(m);
    const h = nats().headers();
    h.set('Shoal-Source', `${this.o.stream}:${m.id}`);
    const ack = await this.client().publish(this.o.output, value, { msgID: m.key, headers: h });
    await jm.ackAck();
    return ack.duplicate ? 'duplicate' : 'answered';
  }

  async deadLetter(m: BrokerMessage, reason: DeadLetterReason): Promise<'dead_lettered' | 'duplicate'> {
    const jm = this.jsMsg(m);
    const h = nats().headers();
    h.set('Shoal-Source', `${this.o.stream}:${m.id}`);
    h.set('Shoal-Error-Code', reason.code);
    // Header values are one line.
    h.set('Shoal-Error', reason.message.replace(/[\r\n]+/g, ' ').slice(0, 1024));
    h.set('Shoal-Deliveries', String(m.deliveryCount));
    const ack = await this.client().publish(this.o.deadLetter, m.payload, { msgID: m.key, headers: h });
    // No reason: nats-server before 2.10.4 ignores a +TERM that carries one, and redelivers.
    jm.term();
    return ack.duplicate ? 'duplicate' : 'dead_lettered';
  }

  /** nak with a delay doubling per delivery: redelivered soon, to whichever worker pulls next. */
  async release(m: BrokerMessage): Promise<void> {
    this.jsMsg(m).nak(Math.min(MAX_NAK_DELAY_MS, 250 * 2 ** Math.max(0, m.deliveryCount - 1)));
  }

  /** The durable consumer's num_pending (not delivered yet) plus num_ack_pending (delivered, not acknowledged). */
  async lag(): Promise<number> {
    if (this.jsm === undefined) throw new Error(`source ${this.name} is not started`);
    const info = await this.jsm.consumers.info(this.o.stream, this.o.durable);
    return info.num_pending + info.num_ack_pending;
  }

  async close(): Promise<void> {
    const nc = this.nc;
    this.nc = undefined;
    await this.handBack().catch(() => undefined);
    // stop(), not close(): close() resolves only once the iterator is read to its end, which a pull left waiting is not.
    this.dropFetch();
    if (nc !== undefined && !nc.isClosed()) await nc.close();
  }

  /** Naks what the open fetch delivered and nobody took, so it goes to another worker now rather than after ack_wait. */
  private async handBack(): Promise<void> {
    const it = this.iterator;
    if (it === undefined) return;
    let next = this.pendingNext ?? it.next();
    for (;;) {
      const r = await Promise.race([next, new Promise<'empty'>((resolve) => setImmediate(() => resolve('empty')))]);
      if (r === 'empty' || r.done === true) return;
      r.value.nak();
      next = it.next();
    }
  }

  private client(): JetStreamClient {
    if (this.js === undefined) throw new Error(`source ${this.name} is not started`);
    return this.js;
  }
}
