/**
 * A NATS JetStream stream read by a durable pull consumer (explicit acks, ack_wait, max_deliver) that every
 * worker shares. An answer is published to the output subject with Nats-Msg-Id = the idempotency key, so the
 * output stream's duplicate window drops a second answer for a redelivered message (the publish ack says
 * `duplicate`); the input message is acknowledged (and the acknowledgement confirmed) only after that publish.
 */
import { AckPolicy, DeliverPolicy, connect, headers, nanos, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg, type NatsConnection } from 'nats';
import type { CompiledNatsConsume, Logger } from '@shoal/core';
import type { BrokerMessage, DeadLetterReason, Source } from './source.ts';

/** How long pull() waits for a first message. */
const PULL_WAIT_MS = 1000;
/** The longest delay of a nak (a failed call's redelivery), doubling from 250 ms per delivery. */
const MAX_NAK_DELAY_MS = 5000;

export interface JetStreamSourceOptions {
  options: CompiledNatsConsume;
  /** This worker's name (the connection's name, for `nats server report connections`). */
  consumer: string;
  logger: Logger;
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
  private messages: ConsumerMessages | undefined;
  private iterator: AsyncIterator<JsMsg> | undefined;
  /** A next() that a pull gave up waiting on: the following pull takes its message. */
  private pendingNext: Next | undefined;
  private readonly raw = new WeakMap<BrokerMessage, JsMsg>();
  private buffer = 1;

  constructor(opts: JetStreamSourceOptions) {
    this.o = opts.options;
    this.name = opts.options.name;
    this.consumerName = opts.consumer;
    this.logger = opts.logger;
  }

  async start(): Promise<void> {
    // Again after a failure (the consumer loop retries start): a connection made stays, and reconnects by itself.
    this.nc ??= await connect({ servers: this.o.servers, name: `shoal-broker:${this.consumerName}`, maxReconnectAttempts: -1 });
    this.jsm = await this.nc.jetstreamManager();
    this.js = this.nc.jetstream();
    const config = {
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(this.o.ackWaitMs),
      // One delivery more than maxDeliveries: a message whose every attempt killed its worker gets one last
      // delivery, which dead-letters it without calling.
      max_deliver: this.o.maxDeliveries + 1,
    };
    try {
      await this.jsm.consumers.add(this.o.stream, {
        durable_name: this.o.durable, deliver_policy: DeliverPolicy.All, ...config,
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

  /** Sizes the client's prefetch: the consumer loop's concurrency (set before the first pull). */
  setBuffer(n: number): void {
    this.buffer = n;
  }

  async pull(max: number): Promise<BrokerMessage[]> {
    const it = await this.openIterator();
    const out: BrokerMessage[] = [];
    let timer: NodeJS.Timeout | undefined;
    const first = this.pendingNext ?? it.next();
    this.pendingNext = undefined;
    const waited = await Promise.race([first, new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), PULL_WAIT_MS); })]);
    clearTimeout(timer);
    if (waited === 'timeout') { this.pendingNext = first; return out; }
    if (waited.done === true) { this.iterator = undefined; return out; }
    out.push(this.wrap(waited.value));
    // Then whatever the client has already buffered, without waiting for more.
    while (out.length < max) {
      const next = it.next();
      const r = await Promise.race([next, new Promise<'empty'>((resolve) => setImmediate(() => resolve('empty')))]);
      if (r === 'empty') { this.pendingNext = next; break; }
      if (r.done === true) { this.iterator = undefined; break; }
      out.push(this.wrap(r.value));
    }
    return out;
  }

  private async openIterator(): Promise<AsyncIterator<JsMsg>> {
    if (this.iterator !== undefined) return this.iterator;
    if (this.js === undefined) throw new Error(`source ${this.name} is not started`);
    const consumer = await this.js.consumers.get(this.o.stream, this.o.durable);
    this.messages = await consumer.consume({ max_messages: this.buffer });
    this.iterator = this.messages[Symbol.asyncIterator]();
    return this.iterator;
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
    const h = headers();
    h.set('Shoal-Source', `${this.o.stream}:${m.id}`);
    const ack = await this.client().publish(this.o.output, value, { msgID: m.key, headers: h });
    await jm.ackAck();
    return ack.duplicate ? 'duplicate' : 'answered';
  }

  async deadLetter(m: BrokerMessage, reason: DeadLetterReason): Promise<'dead_lettered' | 'duplicate'> {
    const jm = this.jsMsg(m);
    const h = headers();
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
    await this.handBack();
    // stop(), not close(): close() resolves only once the iterator is read to its end, which a pull left waiting is not.
    this.messages?.stop();
    this.messages = undefined;
    this.iterator = undefined;
    this.pendingNext = undefined;
    if (nc !== undefined && !nc.isClosed()) await nc.close();
  }

  /** Naks what the client prefetched and nobody took, so it goes to another worker now rather than after ack_wait. */
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
