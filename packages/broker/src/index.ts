/**
 * Broker ingress: a deployment consumes a Redis stream or a NATS JetStream stream (the `consume` deployment
 * option); every worker runs one consumer per source, calls the deployment through its router, and writes each
 * answer once to an output stream. See docs/broker.md.
 *
 *   const set = new ConsumerSet({ consumerName: worker.name, logger, call: (key, method, arg, o) => router.call(key, method, [arg], ...) });
 *   set.update(apps);            // on every applications change
 *   await set.stop(10_000);      // on SIGTERM: finish or hand back what is in flight
 */
export type { BrokerMessage, DeadLetterReason, SettleResult, Source } from './source.ts';
export { SourceConfigError, SourceGoneError } from './source.ts';
export { RedisStreamSource, type RedisStreamSourceOptions } from './redis-stream-source.ts';
export { JetStreamSource, type JetStreamSourceOptions } from './jetstream-source.ts';
export { Consumer, MESSAGE_RESULTS, type ConsumerObserver, type ConsumerOptions, type ConsumerState, type MessageResult } from './consumer.ts';
export { ConsumerSet, type ConsumerSample, type ConsumerSetOptions } from './consumer-set.ts';
export { createSource } from './create-source.ts';
export { decodePayload, encodeAnswer } from './codec.ts';
