/** The Source for one compiled `consume` entry. */
import type { CompiledConsumeSource, ConsumeCommonOptions, Logger } from '@shoal/core';
import { JetStreamSource } from './jetstream-source.ts';
import { RedisStreamSource } from './redis-stream-source.ts';
import type { Source } from './source.ts';

/** `consumer`: this consumer's name (the worker's), unique in the group. */
export function createSource(spec: CompiledConsumeSource, consumer: string, logger: Logger): Source {
  if ('redis' in spec) return new RedisStreamSource({ options: spec.redis, consumer, logger });
  const source = new JetStreamSource({ options: spec.nats, consumer, logger });
  source.setBuffer(spec.nats.concurrency);
  return source;
}

/** The options both kinds share, whichever this entry is. */
export function commonOf(spec: CompiledConsumeSource): Required<ConsumeCommonOptions> {
  return 'redis' in spec ? spec.redis : spec.nats;
}
