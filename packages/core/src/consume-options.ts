/**
 * Broker ingress options (`consume`): a deployment consumes a Redis stream or a NATS JetStream stream, each
 * message's payload becoming the argument of one call to its `method`, the answer written to an output stream.
 * Compiled to a list with every default filled in; the compiled form is a valid input form too. See docs/broker.md.
 */
import { InvalidOptionError } from './errors.ts';
import { checkInt, checkName } from './options.ts';

/** How a message's payload becomes the method's argument, and the answer the output payload. */
export type ConsumeEncoding = 'json' | 'text' | 'bytes';

/** What both brokers share. */
export interface ConsumeCommonOptions {
  /** The label this source carries in metrics and logs; unique within the deployment. @default `redis:<stream>` or `nats:<stream>` */
  name?: string;
  /** The deployment's method each message calls, with the decoded payload as its one argument. @default 'call' */
  method?: string;
  /**
   * Deliveries of one message before it goes to the dead-letter output with its last error (a call that failed
   * with a 5xx, a timeout, or a worker that died holding it). A 4xx (the payload's fault) dead-letters at once.
   * @default 5
   */
  maxDeliveries?: number;
  /** Messages one worker runs at once from this source (its bound on in-flight messages). @default 16 */
  concurrency?: number;
  /**
   * 'json': the payload is parsed as JSON and the answer written as JSON. 'text': a UTF-8 string in, and a
   * string answer out as it is. 'bytes': a Uint8Array in, a Uint8Array answer out as it is. A non-string
   * (non-bytes) answer is written as JSON in every encoding. @default 'json'
   */
  encoding?: ConsumeEncoding;
  /**
   * Deadline of each call, from when the worker took the message. It may exceed claimIdleMs / ackWaitMs: while a
   * call runs, its message is kept alive (every claimIdleMs/3, ackWaitMs/3), so it is not redelivered. @default 60000
   */
  timeoutMs?: number;
}

/** A Redis stream, read by a consumer group (XREADGROUP), answers XADDed to another stream. */
export interface RedisConsumeOptions extends ConsumeCommonOptions {
  /** redis:// or rediss:// URL. Required. */
  url: string;
  /** The input stream's key; created (MKSTREAM) with the group when missing. Required. */
  stream: string;
  /** The consumer group; every worker is one consumer of it, named for the worker. @default `shoal:<deployment>` */
  group?: string;
  /** The output stream's key: one entry per answered message (fields id, entry, result). Required. */
  output: string;
  /** The dead-letter stream's key (fields id, entry, payload, error, code, deliveries). @default `<stream>:dead` */
  deadLetter?: string;
  /**
   * A delivered message idle this long (its consumer died, or its call failed) is claimed by another consumer
   * (XAUTOCLAIM): the redelivery delay. Not a bound on a call: the consumer running one resets its message's idle
   * time every claimIdleMs/3 (XCLAIM ... JUSTID, no delivery counted). At least 100. @default 30000
   */
  claimIdleMs?: number;
  /** How long an answered idempotency key is remembered, so a redelivery of its message writes no second answer. @default 86400000 (one day) */
  idempotencyTtlMs?: number;
  /** The entry field holding the payload. @default 'payload' */
  payloadField?: string;
  /** The entry field holding the producer's idempotency key; an entry without it is keyed by its stream id. @default 'id' */
  idField?: string;
}

/** A JetStream stream, read by a durable pull consumer, answers published to a subject that a stream captures. */
export interface NatsConsumeOptions extends ConsumeCommonOptions {
  /** nats:// server URL(s). Required. */
  servers: string | string[];
  /** The input JetStream stream's name (it must exist). Required. */
  stream: string;
  /** Only messages of this subject (wildcards allowed). @default every subject of the stream */
  subject?: string;
  /** The durable consumer's name, created when missing; shared by every worker. @default `shoal_<deployment>` (dots become _) */
  durable?: string;
  /** The subject answers are published to, with Nats-Msg-Id = the idempotency key; a stream must capture it. Required. */
  output: string;
  /** The dead-letter subject (a stream must capture it). @default `<output>.dead` */
  deadLetter?: string;
  /**
   * The consumer's ack_wait: an unacknowledged message is redelivered after it (its consumer died, or the +WPI
   * keep-alive sent every ackWaitMs/3 while its call runs stopped). Not a bound on a call. The output stream's
   * duplicate_window should exceed ackWaitMs x (maxDeliveries + 1) + timeoutMs (start() warns otherwise). @default 30000
   */
  ackWaitMs?: number;
}

/** One source: exactly one of the two keys. */
export type ConsumeSourceOptions = { redis: RedisConsumeOptions } | { nats: NatsConsumeOptions };
/** One source, or a list of them. */
export type ConsumeOptions = ConsumeSourceOptions | ConsumeSourceOptions[];

export type CompiledRedisConsume = Required<RedisConsumeOptions>;
/** `subject` stays absent when not given (absent, not undefined: the compiled form travels as JSON and msgpack). */
export type CompiledNatsConsume = Required<Omit<NatsConsumeOptions, 'servers' | 'subject'>> & { servers: string[]; subject?: string };
export type CompiledConsumeSource = { redis: CompiledRedisConsume } | { nats: CompiledNatsConsume };

const COMMON_KEYS = ['name', 'method', 'maxDeliveries', 'concurrency', 'encoding', 'timeoutMs'];
const REDIS_KEYS = [...COMMON_KEYS, 'url', 'stream', 'group', 'output', 'deadLetter', 'claimIdleMs', 'idempotencyTtlMs', 'payloadField', 'idField'];
const NATS_KEYS = [...COMMON_KEYS, 'servers', 'stream', 'subject', 'durable', 'output', 'deadLetter', 'ackWaitMs'];
const ENCODINGS: readonly ConsumeEncoding[] = ['json', 'text', 'bytes'];
/** JetStream names (streams, durables): no whitespace, dots, wildcards or path separators. */
const NATS_NAME_RE = /^[^\s.*>/\\]{1,255}$/;
/** A subject: tokens separated by dots, no whitespace; `*` and `>` only as whole tokens (and `>` last). */
const SUBJECT_RE = /^(?:[^\s.*>]+|\*)(?:\.(?:[^\s.*>]+|\*))*(?:\.>)?$|^>$/;

function object(path: string, value: unknown, keys: readonly string[], what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidOptionError(path, 'must be an object', value);
  for (const key of Object.keys(value)) if (!keys.includes(key)) throw new InvalidOptionError(`${path}.${key}`, `is not a ${what} option (${keys.join(', ')})`);
  return value as Record<string, unknown>;
}

function text(path: string, value: unknown, fallback?: string): string {
  if (value === undefined && fallback !== undefined) return fallback;
  if (value === undefined) throw new InvalidOptionError(path, 'is required (a non-empty string)');
  if (typeof value !== 'string' || value === '') throw new InvalidOptionError(path, 'must be a non-empty string', value);
  return value;
}

function url(path: string, value: unknown, schemes: readonly string[]): string {
  const s = text(path, value);
  let scheme: string;
  try { scheme = new URL(s).protocol.slice(0, -1); } catch { throw new InvalidOptionError(path, `must be a URL (${schemes.map((x) => `${x}://`).join(' or ')})`, s); }
  if (!schemes.includes(scheme)) throw new InvalidOptionError(path, `must be a ${schemes.map((x) => `${x}://`).join(' or ')} URL`, s);
  return s;
}

function subject(path: string, value: unknown, wildcards: boolean, fallback?: string): string {
  const s = text(path, value, fallback);
  if (!SUBJECT_RE.test(s)) throw new InvalidOptionError(path, 'must be a NATS subject (dot-separated tokens, no spaces)', s);
  if (!wildcards && /(^|\.)[*>](\.|$)/.test(s)) throw new InvalidOptionError(path, 'must be a subject without wildcards (answers are published to it)', s);
  return s;
}

function natsName(path: string, value: unknown, fallback?: string): string {
  const s = text(path, value, fallback);
  if (!NATS_NAME_RE.test(s)) throw new InvalidOptionError(path, 'must be a JetStream name: no spaces, dots, *, >, / or \\', s);
  return s;
}

function common(path: string, o: Record<string, unknown>, name: string): Required<ConsumeCommonOptions> {
  const encoding = o.encoding ?? 'json';
  if (!ENCODINGS.includes(encoding as ConsumeEncoding)) throw new InvalidOptionError(`${path}.encoding`, `must be ${ENCODINGS.map((e) => `'${e}'`).join(', ')}`, encoding);
  return {
    name: text(`${path}.name`, o.name, name),
    method: checkName(`${path}.method`, o.method ?? 'call'),
    maxDeliveries: checkInt(`${path}.maxDeliveries`, o.maxDeliveries, 1, 5, 1000),
    concurrency: checkInt(`${path}.concurrency`, o.concurrency, 1, 16, 10_000),
    encoding: encoding as ConsumeEncoding,
    timeoutMs: checkInt(`${path}.timeoutMs`, o.timeoutMs, 1, 60_000),
  };
}

function compileRedis(path: string, raw: unknown, deployment: string): CompiledRedisConsume {
  const o = object(path, raw, REDIS_KEYS, 'redis consume');
  const stream = text(`${path}.stream`, o.stream);
  const output = text(`${path}.output`, o.output);
  const deadLetter = text(`${path}.deadLetter`, o.deadLetter, `${stream}:dead`);
  if (output === stream) throw new InvalidOptionError(`${path}.output`, 'must differ from stream (answers would be consumed again)', output);
  if (deadLetter === stream || deadLetter === output) throw new InvalidOptionError(`${path}.deadLetter`, 'must differ from stream and output', deadLetter);
  const payloadField = text(`${path}.payloadField`, o.payloadField, 'payload');
  const idField = text(`${path}.idField`, o.idField, 'id');
  if (idField === payloadField) throw new InvalidOptionError(`${path}.idField`, 'must differ from payloadField', idField);
  return {
    ...common(path, o, `redis:${stream}`),
    url: url(`${path}.url`, o.url, ['redis', 'rediss']),
    stream,
    group: text(`${path}.group`, o.group, `shoal:${deployment}`),
    output,
    deadLetter,
    // At least 100: a running call's entry is kept alive every claimIdleMs/3.
    claimIdleMs: checkInt(`${path}.claimIdleMs`, o.claimIdleMs, 100, 30_000),
    idempotencyTtlMs: checkInt(`${path}.idempotencyTtlMs`, o.idempotencyTtlMs, 1000, 86_400_000),
    payloadField,
    idField,
  };
}

function compileNats(path: string, raw: unknown, deployment: string): CompiledNatsConsume {
  const o = object(path, raw, NATS_KEYS, 'nats consume');
  const list = typeof o.servers === 'string' ? [o.servers] : o.servers;
  if (!Array.isArray(list) || list.length === 0) throw new InvalidOptionError(`${path}.servers`, 'is required: a nats:// URL or a non-empty list of them', o.servers);
  const servers = list.map((s: unknown, i) => url(`${path}.servers[${i}]`, s, ['nats', 'tls']));
  const stream = natsName(`${path}.stream`, o.stream);
  const output = subject(`${path}.output`, o.output, false);
  const deadLetter = subject(`${path}.deadLetter`, o.deadLetter, false, `${output}.dead`);
  if (deadLetter === output) throw new InvalidOptionError(`${path}.deadLetter`, 'must differ from output', deadLetter);
  return {
    ...common(path, o, `nats:${stream}`),
    servers,
    stream,
    ...(o.subject === undefined ? {} : { subject: subject(`${path}.subject`, o.subject, true) }),
    durable: natsName(`${path}.durable`, o.durable, `shoal_${deployment.replace(/\./g, '_')}`),
    output,
    deadLetter,
    ackWaitMs: checkInt(`${path}.ackWaitMs`, o.ackWaitMs, 100, 30_000),
  };
}

/** Compiles `consume` of the deployment named `deployment`; errors name the option path (`<path>[1].redis.url`). */
export function compileConsume(input: unknown, deployment: string, path: string): CompiledConsumeSource[] {
  const list = Array.isArray(input) ? input : [input];
  const one = !Array.isArray(input);
  if (list.length === 0) throw new InvalidOptionError(path, 'must be a source ({ redis: {...} } or { nats: {...} }) or a non-empty list of them', input);
  const names = new Map<string, number>();
  return list.map((entry: unknown, i): CompiledConsumeSource => {
    const p = one ? path : `${path}[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new InvalidOptionError(p, 'must be { redis: {...} } or { nats: {...} }', entry);
    const keys = Object.keys(entry);
    if (keys.length !== 1 || (keys[0] !== 'redis' && keys[0] !== 'nats')) {
      throw new InvalidOptionError(p, `must have exactly one key, redis or nats (got ${keys.length === 0 ? 'none' : keys.join(', ')})`);
    }
    const e = entry as Record<string, unknown>;
    const source: CompiledConsumeSource = keys[0] === 'redis'
      ? { redis: compileRedis(`${p}.redis`, e.redis, deployment) }
      : { nats: compileNats(`${p}.nats`, e.nats, deployment) };
    const name = 'redis' in source ? source.redis.name : source.nats.name;
    const twin = names.get(name);
    if (twin !== undefined) throw new InvalidOptionError(`${p}.${keys[0]}.name`, `is also the name of source [${twin}]: give each source its own name`, name);
    names.set(name, i);
    return source;
  });
}
