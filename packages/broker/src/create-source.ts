/** The Source for one compiled `consume` entry. */
import type { CompiledConsumeSource, ConsumeCommonOptions, Logger } from '@shoal/core';
import { JetStreamSource } from './jetstream-source.ts';
import { RedisStreamSource } from './redis-stream-source.ts';
import type { Source } from './source.ts';

/** `consumer`: this consumer's name (the worker's), unique in the group; `path`: the entry's option path, for errors. */
export function createSource(spec: CompiledConsumeSource, consumer: string, logger: Logger, path?: string): Source {
  if ('redis' in spec) return new RedisStreamSource({ options: spec.redis, consumer, logger });
  return new JetStreamSource({ options: spec.nats, consumer, logger, ...(path !== undefined ? { path } : {}) });
}

/** The options both kinds share, whichever this entry is. */
export function commonOf(spec: CompiledConsumeSource): Required<ConsumeCommonOptions> {
  return 'redis' in spec ? spec.redis : spec.nats;
}
