import { describe, expect, it } from 'vitest';
import { InvalidOptionError, compileCache, compileDeploymentOptions } from '@shoal/core';

function errorFor(fn: () => unknown): InvalidOptionError {
  try { fn(); } catch (err) { if (err instanceof InvalidOptionError) return err; throw err; }
  throw new Error('expected an InvalidOptionError');
}

describe('deployment option cache', () => {
  it('fills defaults, and the compiled form recompiles to itself', () => {
    const c = compileDeploymentOptions({ cache: {} }, 'M').cache!;
    expect(c).toEqual({
      ttlMs: 60_000, store: 'memory', redisKeyPrefix: 'shoal:cache', nearCache: false, maxBytes: 64 * 1024 * 1024, maxEntries: 100_000, maxEntryBytes: 8 * 1024 * 1024,
      methods: ['*'], httpMethods: ['GET', 'HEAD'], varyHeaders: ['accept', 'authorization', 'content-type', 'cookie'],
    });
    expect(compileCache(c, 'cache')).toEqual(c);
    const r = compileCache({ store: 'redis', redisUrl: 'redis://127.0.0.1:6379', httpMethods: ['GET', 'POST'], varyHeaders: [], nearCache: true }, 'cache');
    expect(compileCache(r, 'cache')).toEqual(r);
    expect(compileDeploymentOptions({}, 'M').cache).toBeUndefined();
  });

  it('maxEntryBytes defaults to maxBytes when that is smaller', () => {
    expect(compileCache({ maxBytes: 4096 }, 'cache').maxEntryBytes).toBe(4096);
  });

  it.each([
    [{ ttlMs: 0 }, 'deployment.cache.ttlMs', 'between 1 and'],
    [{ ttlMs: 1.5 }, 'deployment.cache.ttlMs', 'integer'],
    [{ store: 'disk' }, 'deployment.cache.store', "'memory' or 'redis'"],
    [{ store: 'redis' }, 'deployment.cache.redisUrl', 'is required'],
    [{ store: 'redis', redisUrl: 'http://x' }, 'deployment.cache.redisUrl', 'redis://'],
    [{ store: 'redis', redisUrl: 'not a url' }, 'deployment.cache.redisUrl', 'must be a URL'],
    [{ redisUrl: 'redis://x' }, 'deployment.cache.redisUrl', "only for store 'redis'"],
    [{ maxBytes: 10 }, 'deployment.cache.maxBytes', 'between 1024'],
    [{ maxBytes: 4096, maxEntryBytes: 8192 }, 'deployment.cache.maxEntryBytes', 'at most maxBytes (4096)'],
    [{ maxEntries: 0 }, 'deployment.cache.maxEntries', 'between 1'],
    [{ methods: [] }, 'deployment.cache.methods', 'non-empty array'],
    [{ methods: ['pre dict'] }, 'deployment.cache.methods[0]', 'method names'],
    [{ methods: ['a', 'a'] }, 'deployment.cache.methods[1]', 'listed twice'],
    [{ httpMethods: ['DELETE'] }, 'deployment.cache.httpMethods[0]', 'GET, HEAD, POST'],
    [{ varyHeaders: ['Accept'] }, 'deployment.cache.varyHeaders[0]', 'lower-case'],
    [{ redisKeyPrefix: 'has space' }, 'deployment.cache.redisKeyPrefix', 'letters, digits'],
    [{ tll: 5 }, 'deployment.cache.tll', 'is not a cache option'],
    [{ nearCache: true }, 'deployment.cache.nearCache', "only for store 'redis'"],
    [{ store: 'redis', redisUrl: 'redis://x', nearCache: 'yes' }, 'deployment.cache.nearCache', 'true or false'],
  ])('refuses %j naming %s', (cache, path, words) => {
    const err = errorFor(() => compileDeploymentOptions({ cache } as never, 'M'));
    expect(err.message).toContain(path);
    expect(err.message).toContain(words);
  });

  it('refuses a cache that is not an object', () => {
    expect(errorFor(() => compileDeploymentOptions({ cache: true } as never, 'M')).message).toContain('deployment.cache');
  });
});
