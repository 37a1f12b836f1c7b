/**
 * The seam between a broker and the consumer loop: pull a batch, then settle each message exactly one way
 * (answer, dead-letter, or release for redelivery). Small on purpose: a Kafka source is a thin adapter (see
 * docs/broker.md): pull = poll a consumer group's partitions, answer = a keyed idempotent produce then commit the
 * offset, deadLetter = produce to the dead-letter topic then commit, release = seek back.
 */

/** One delivery of one message. */
export interface BrokerMessage {
  /**
   * The idempotency key: the producer's own (the Redis entry's `id` field, the JetStream Nats-Msg-Id header) or,
   * without one, the broker's id of the message. Every delivery of a message carries the same key, and its answer
   * is written at most once per key.
   */
  readonly key: string;
  /** The broker's id of this message (a Redis stream entry id, a JetStream stream sequence), for logs and records. */
  readonly id: string;
  /** The payload as the broker holds it. */
  readonly payload: Uint8Array;
  /** How many times the broker has delivered it, this delivery included (1 the first time). */
  readonly deliveryCount: number;
  /** Set when the source could not read a payload from the message (why): it goes to the dead letters at once. */
  readonly malformed?: string;
}

/** What became of a settled message. */
export type SettleResult = 'answered' | 'duplicate' | 'dead_lettered';

/** Why a message went to the dead-letter output. */
export interface DeadLetterReason {
  /** A stable code: the call's error code (ERR_BAD_REQUEST...), or ERR_MAX_DELIVERIES. */
  code: string;
  message: string;
}

export interface Source {
  /** The source's name (metrics label). */
  readonly name: string;
  /** Connects and creates what is missing (the consumer group, the durable consumer). */
  start(): Promise<void>;
  /**
   * Up to `max` messages, waiting a short while (about a second) for the first; [] when none came. Includes
   * messages redelivered because the consumer that held them died or released them.
   */
  pull(max: number): Promise<BrokerMessage[]>;
  /**
   * Writes the answer durably and acknowledges the message; 'duplicate' when an answer for its key was already
   * written (then only the acknowledgement happens).
   */
  answer(m: BrokerMessage, value: Uint8Array): Promise<'answered' | 'duplicate'>;
  /** Writes the message and the reason to the dead-letter output and acknowledges it, so it is not delivered again. */
  deadLetter(m: BrokerMessage, reason: DeadLetterReason): Promise<'dead_lettered' | 'duplicate'>;
  /** Leaves the message unacknowledged, to be delivered again (to this consumer or another). */
  release(m: BrokerMessage): Promise<void>;
  /** Messages not yet answered: not delivered yet, plus delivered and not acknowledged. */
  lag(): Promise<number>;
  /** Disconnects. Messages it held and did not settle stay pending in the broker and are redelivered. */
  close(): Promise<void>;
  /**
   * Tells the broker that these messages (pulled, not settled: their calls are running) are still being worked on,
   * so none is redelivered meanwhile and none uses up a delivery: a Redis XCLAIM of them to this consumer (JUSTID,
   * which resets their idle time without counting a delivery), a JetStream `+WPI` (working). The consumer loop
   * calls it every keepAliveMs while it holds messages. A source without it redelivers a call that runs past its
   * redelivery delay.
   */
  keepAlive?(messages: readonly BrokerMessage[]): Promise<void>;
  /** How often keepAlive is called: a third of the redelivery delay (claimIdleMs, ackWaitMs). */
  readonly keepAliveMs?: number;
}

/**
 * The group or the durable consumer is gone (Redis restarted without persistence, the stream was deleted, the
 * durable was deleted): the consumer loop calls start() again, which creates it anew.
 */
export class SourceGoneError extends Error {
  override readonly name = 'SourceGoneError';
}

/**
 * The broker is reachable but set up so that this source cannot work (the input stream is missing, no stream
 * captures the output subject). The message names the option and the value; the loop retries start() with backoff.
 */
export class SourceConfigError extends Error {
  override readonly name = 'SourceConfigError';
}
