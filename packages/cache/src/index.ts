/**
 * Response caches for shoal's routers (docs/caching.md, docs/semantic-cache.md).
 *
 * ```ts
 * const cache = new ResponseCache({ store: new MemoryStore({ maxBytes: 64 << 20, maxEntries: 100_000 }), ttlMs: 60_000, maxEntryBytes: 8 << 20 });
 * const { value, result } = await cache.get(`app/dep:v1:${inputHash(args)}`, () => compute(args), () => 'store');
 * ```
 */
// Exact-match cache (docs/caching.md).
export { inputHash, tryInputHash, UnhashableInputError } from './input-hash.ts';
export { encodeValue, decodeValue } from './value-codec.ts';
export { type CacheStore } from './store.ts';
export { MemoryStore, type MemoryStoreOptions } from './memory-store.ts';
export { RedisStore, RedisClients, DEFAULT_REDIS_COMMAND_TIMEOUT_MS, type RedisStoreOptions } from './redis-store.ts';
export { NearStore } from './near-store.ts';
export { ResponseCache, ErrorLogLimiter, isStream, wantsBypass, type ResponseCacheOptions, type CacheResult, type DeploymentCacheObserver, type Disposition, type Answer, type Outcome } from './response-cache.ts';
// Semantic cache (docs/semantic-cache.md).
export { SemanticCache, type SemanticCacheConfig, type SemanticHit } from './semantic-cache.ts';
export { SemanticMethods, type SemanticCacheObserver, type SemanticResult } from './semantic-methods.ts';
export { SemanticCacheRegistry, SemanticCacheSet, MAX_MODEL_CACHES, type SemanticCacheKey, type SemanticCacheSize } from './semantic-registry.ts';
export { FlatIndex, HnswIndex, normalize, type HnswOptions, type Nearest, type VectorIndex } from './semantic-index.ts';
export { hashedTextEmbedding, tokenize, type TextEmbeddingOptions } from './text-embedding.ts';
export { evaluatePairwise, evaluateShared, readPairs, sweep, type LabelledPair, type SemanticRates } from './semantic-eval.ts';
