import { describe, expect, it } from 'vitest';
import { compileDeploymentOptions, type DeploymentOptions } from '../src/index.ts';
import { errorFor } from './option-error.ts';

const redis = { url: 'redis://127.0.0.1:6379', stream: 'in', output: 'out' };
const nats = { servers: 'nats://127.0.0.1:4222', stream: 'IN', output: 'out' };

describe('consume options', () => {
  it('fills every default, as a list, and the compiled form recompiles to itself (also through JSON)', () => {
    const c = compileDeploymentOptions({ consume: { redis } }, 'Model.v2');
    expect(c.consume).toEqual([{ redis: {
      ...redis, name: 'redis:in', method: 'call', maxDeliveries: 5, concurrency: 16, encoding: 'json', timeoutMs: 60_000,
      group: 'shoal:Model.v2', deadLetter: 'in:dead', claimIdleMs: 30_000, idempotencyTtlMs: 86_400_000, payloadField: 'payload', idField: 'id',
    } }]);
    const n = compileDeploymentOptions({ consume: [{ nats }, { nats: { ...nats, servers: ['nats://a:1', 'nats://b:2'], subject: 'in.*', name: 'second' } }] }, 'Model.v2');
    expect(n.consume?.[0]).toEqual({ nats: {
      ...nats, servers: ['nats://127.0.0.1:4222'], name: 'nats:IN', method: 'call', maxDeliveries: 5, concurrency: 16, encoding: 'json', timeoutMs: 60_000,
      durable: 'shoal_Model_v2', deadLetter: 'out.dead', ackWaitMs: 30_000,
    } });
    expect(n.consume?.[0]).not.toHaveProperty('subject');
    expect(n.consume?.[1]).toMatchObject({ nats: { subject: 'in.*', servers: ['nats://a:1', 'nats://b:2'] } });
    for (const x of [c, n]) {
      const again = JSON.parse(JSON.stringify(x)) as DeploymentOptions;
      expect(compileDeploymentOptions(again, 'Model.v2').consume).toEqual(x.consume);
    }
    expect(compileDeploymentOptions({}, 'm').consume).toBeUndefined();
  });

  it('refuses bad sources, naming the option path and the value', () => {
    const cases: Array<[unknown, string]> = [
      [[], 'deployment.consume: must be a source'],
      [{}, 'deployment.consume: must have exactly one key, redis or nats (got none)'],
      [{ redis, nats }, 'deployment.consume: must have exactly one key, redis or nats (got redis, nats)'],
      [{ kafka: {} }, 'deployment.consume: must have exactly one key, redis or nats (got kafka)'],
      [{ redis: { ...redis, url: 'http://x' } }, 'deployment.consume.redis.url: must be a redis:// or rediss:// URL (got "http://x")'],
      [{ redis: { ...redis, url: undefined } }, 'deployment.consume.redis.url: is required'],
      [{ redis: { ...redis, output: 'in' } }, 'deployment.consume.redis.output: must differ from stream'],
      [{ redis: { ...redis, deadLetter: 'out' } }, 'deployment.consume.redis.deadLetter: must differ from stream and output'],
      [{ redis: { ...redis, concurrency: 0 } }, 'deployment.consume.redis.concurrency: must be between 1 and 10000 (got 0)'],
      [{ redis: { ...redis, maxDeliveries: 1.5 } }, 'deployment.consume.redis.maxDeliveries: must be an integer (got 1.5)'],
      [{ redis: { ...redis, encoding: 'xml' } }, "deployment.consume.redis.encoding: must be 'json', 'text', 'bytes' (got \"xml\")"],
      [{ redis: { ...redis, method: 'not a name' } }, 'deployment.consume.redis.method: must be 1-128 characters'],
      [{ redis: { ...redis, idField: 'payload' } }, 'deployment.consume.redis.idField: must differ from payloadField'],
      [{ redis: { ...redis, ackWaitMs: 5 } }, 'deployment.consume.redis.ackWaitMs: is not a redis consume option'],
      [{ redis: { ...redis, claimIdleMs: 50 } }, 'deployment.consume.redis.claimIdleMs: must be between 100 and 9007199254740991 (got 50)'],
      [{ nats: { ...nats, ackWaitMs: 50 } }, 'deployment.consume.nats.ackWaitMs: must be between 100 and 9007199254740991 (got 50)'],
      [[{ nats }, { nats: { ...nats, servers: [] } }], 'deployment.consume[1].nats.servers: is required'],
      [{ nats: { ...nats, servers: ['redis://x'] } }, 'deployment.consume.nats.servers[0]: must be a nats:// or tls:// URL'],
      [{ nats: { ...nats, stream: 'a.b' } }, 'deployment.consume.nats.stream: must be a JetStream name'],
      [{ nats: { ...nats, output: 'out.>' } }, 'deployment.consume.nats.output: must be a subject without wildcards'],
      [{ nats: { ...nats, output: 'a b' } }, 'deployment.consume.nats.output: must be a NATS subject'],
      [{ nats: { ...nats, deadLetter: 'out' } }, 'deployment.consume.nats.deadLetter: must differ from output'],
      [[{ redis }, { redis: { ...redis, output: 'out2' } }], 'deployment.consume[1].redis.name: is also the name of source [0]'],
    ];
    for (const [consume, message] of cases) expect(errorFor({ consume }).message, JSON.stringify(consume)).toContain(`invalid option ${message}`);
  });
});
