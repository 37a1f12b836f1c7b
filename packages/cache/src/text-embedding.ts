/**
 * A deterministic text embedding for the semantic cache's example and tests, needing no model: the feature-hashing
 * trick over word unigrams and character 3- to 5-grams, into a fixed number of dimensions, L2-normalised. It sees
 * spelling, not meaning: it matches rewordings that keep most words or their stems, reorderings, and case and
 * punctuation changes, but not synonyms ("buy" and "purchase" share nothing here). It is a baseline: a deployment
 * replaces it with its own model's sentence embedding (the measured rates of both are in docs/semantic-cache.md).
 *
 *   class Answerer {
 *     embed(question: string) { return hashedTextEmbedding(question); }
 *     answer(question: string) { ... }
 *   }
 *   deployment(Answerer, { semanticCache: { embed: 'embed', threshold: 0.8 } })
 */

export interface TextEmbeddingOptions {
  /** Length of the vector. @default 384 (the size of common small sentence-embedding models) */
  dimensions?: number;
  /** Weight of a whole word against one of its character n-grams. @default 2 */
  wordWeight?: number;
  /** Weight of a stop word (the, a, to, ...) and of its n-grams, against 1 for other words. @default 0.25 */
  stopWordWeight?: number;
}

/**
 * Words that carry little of a question's meaning: weighted down so that "how do I reset my password" and "how do
 * I reset my router" are told apart by what differs.
 */
const STOP_WORDS: ReadonlySet<string> = new Set([
  'a', 'an', 'the', 'i', 'me', 'my', 'we', 'our', 'you', 'your', 'it', 'its', 'is', 'are', 'was', 'be', 'been', 'am',
  'do', 'does', 'did', 'can', 'could', 'should', 'would', 'will', 'to', 'of', 'in', 'on', 'at', 'for', 'with', 'from',
  'by', 'and', 'or', 'how', 'what', 'which', 'when', 'where', 'why', 'who', 'this', 'that', 'there', 'please', 'some',
  'any', 'as', 'so', 'if', 'about', 'into', 'up', 'get', 'have', 'has',
]);

/** Lower case, letters and digits only (apostrophes dropped inside words), one space between words. */
export function tokenize(text: string): string[] {
  return text.toLowerCase().normalize('NFKD').replace(/[\u0300-\u036f]/g, '').replace(/'/g, '').split(/[^a-z0-9]+/).filter((w) => w.length > 0);
}

/** FNV-1a, 32 bits. */
function hash(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Adds a feature at a hashed position, with a hashed sign (so collisions cancel on average instead of adding up). */
function addFeature(v: Float32Array, feature: string, weight: number): void {
  const h = hash(feature, 0);
  const sign = (hash(feature, 0x9e3779b9) & 1) === 0 ? 1 : -1;
  v[h % v.length]! += sign * weight;
}

/** The embedding of `text`: a unit vector, or the zero vector for text with no letters or digits. */
export function hashedTextEmbedding(text: string, opts: TextEmbeddingOptions = {}): Float32Array {
  const dims = opts.dimensions ?? 384;
  if (!Number.isInteger(dims) || dims < 1) throw new RangeError(`dimensions must be an integer >= 1, got ${dims}`);
  const wordWeight = opts.wordWeight ?? 2;
  const stopWeight = opts.stopWordWeight ?? 0.25;
  const v = new Float32Array(dims);
  for (const word of tokenize(text)) {
    const w = STOP_WORDS.has(word) ? stopWeight : 1;
    addFeature(v, `w:${word}`, wordWeight * w);
    // N-grams of the word with its boundaries marked, so a stem ("reset", "resetting") shares most of them.
    const padded = `<${word}>`;
    for (let n = 3; n <= 5; n++) {
      for (let i = 0; i + n <= padded.length; i++) addFeature(v, padded.slice(i, i + n), w);
    }
  }
  let sq = 0;
  for (let i = 0; i < dims; i++) sq += v[i]! * v[i]!;
  if (sq > 0) {
    const inv = 1 / Math.sqrt(sq);
    for (let i = 0; i < dims; i++) v[i]! *= inv;
  }
  return v;
}
