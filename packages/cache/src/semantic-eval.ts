/**
 * Measures a semantic cache's hit rate and false-hit rate on a labelled set of question pairs (the one shipped in
 * test/fixtures/paraphrases.jsonl): pairs labelled `same` (a paraphrase: reworded, reordered, case and
 * punctuation, synonyms) and `different` (hard negatives that share most words, and unrelated questions).
 *
 * Two ways, both through SemanticCache itself (so the index's approximation is part of the measurement):
 * - pairwise: for each pair, a cache holding only its first question is asked the second;
 * - shared: one cache holding every distinct first question is asked every second one; a hit serves the answer of
 *   whichever entry is nearest, so it is correct only if that entry's question means the same as the query.
 */
import { readFileSync } from 'node:fs';
import { SemanticCache } from './semantic-cache.ts';
import { normalize } from './semantic-index.ts';

export interface LabelledPair { a: string; b: string; label: 'same' | 'different'; kind: string }

export interface SemanticRates {
  threshold: number;
  /** Pairs labelled same, and how many were served the right answer. */
  positives: number;
  hits: number;
  hitRate: number;
  /** Pairs labelled different, and how many were served an answer anyway. */
  negatives: number;
  falseHits: number;
  falseHitRate: number;
  /** Shared cache only: positives served another question's answer (counted in neither hits nor falseHits). */
  wrongHits: number;
  /** Hit rate per paraphrase kind (reword, reorder, case, synonym). */
  hitRateByKind: Record<string, number>;
}

/** Reads a JSONL file of pairs; a malformed line throws naming its line number. */
export function readPairs(file: string): LabelledPair[] {
  const out: LabelledPair[] = [];
  const lines = readFileSync(file, 'utf8').split('\n');
  for (const [i, line] of lines.entries()) {
    if (line.trim() === '') continue;
    const p = JSON.parse(line) as Partial<LabelledPair>;
    if (typeof p.a !== 'string' || typeof p.b !== 'string' || (p.label !== 'same' && p.label !== 'different') || typeof p.kind !== 'string') {
      throw new Error(`${file}:${i + 1}: a pair needs string a and b, label 'same' or 'different', and a kind`);
    }
    out.push(p as LabelledPair);
  }
  return out;
}

type Embed = (text: string) => ArrayLike<number> | Float32Array;

function unit(embed: Embed, text: string): Float32Array {
  const v = normalize(Array.from(embed(text)), undefined, `embedding of ${JSON.stringify(text)}`);
  if (v === undefined) throw new Error(`embedding of ${JSON.stringify(text)} is the zero vector`);
  return v;
}

function rates(threshold: number, pairs: readonly LabelledPair[], served: (p: LabelledPair) => 'right' | 'wrong' | 'none'): SemanticRates {
  let positives = 0, hits = 0, negatives = 0, falseHits = 0, wrongHits = 0;
  const byKind = new Map<string, [number, number]>();
  for (const p of pairs) {
    const s = served(p);
    if (p.label === 'same') {
      positives++;
      const k = byKind.get(p.kind) ?? [0, 0];
      k[0]++;
      if (s === 'right') { hits++; k[1]++; } else if (s === 'wrong') wrongHits++;
      byKind.set(p.kind, k);
    } else {
      negatives++;
      if (s !== 'none') falseHits++;
    }
  }
  const hitRateByKind: Record<string, number> = {};
  for (const [kind, [n, h]] of byKind) hitRateByKind[kind] = h / n;
  return { threshold, positives, hits, hitRate: hits / positives, negatives, falseHits, falseHitRate: falseHits / negatives, wrongHits, hitRateByKind };
}

/** Each pair alone: a cache holding `a` is asked `b`. */
export function evaluatePairwise(pairs: readonly LabelledPair[], embed: Embed, threshold: number): SemanticRates {
  return rates(threshold, pairs, (p) => {
    const cache = new SemanticCache({ threshold, maxEntries: 1, index: 'flat' });
    cache.insert(unit(embed, p.a), p.a);
    return cache.lookup(unit(embed, p.b)) === undefined ? 'none' : 'right';
  });
}

/**
 * One cache holding every distinct `a` (its answer: its own text), asked every `b`. An answer is right when the
 * served question is the pair's `a` (a paraphrase), or is the query itself, or is labelled same as the query
 * elsewhere in the set; anything else served to a `different` pair is a false hit.
 */
export function evaluateShared(pairs: readonly LabelledPair[], embed: Embed, threshold: number, index: 'hnsw' | 'flat' = 'hnsw'): SemanticRates {
  const cache = new SemanticCache({ threshold, maxEntries: pairs.length + 1, index });
  const firsts = [...new Set(pairs.map((p) => p.a))];
  const same = new Map<string, Set<string>>();
  for (const p of pairs) {
    if (p.label !== 'same') continue;
    (same.get(p.b) ?? same.set(p.b, new Set()).get(p.b)!).add(p.a);
  }
  // As the cache would take them: a first question already served by an earlier, near one adds no entry of its own.
  for (const a of firsts) cache.insert(unit(embed, a), a);
  return rates(threshold, pairs, (p) => {
    const hit = cache.lookup(unit(embed, p.b));
    if (hit === undefined) return 'none';
    const servedText = hit.value as string;
    const right = servedText === p.b || same.get(p.b)?.has(servedText) === true;
    return right ? 'right' : 'wrong';
  });
}

/** Both evaluations at each threshold, for the docs' sweep. */
export function sweep(pairs: readonly LabelledPair[], embed: Embed, thresholds: readonly number[]): Array<{ pairwise: SemanticRates; shared: SemanticRates }> {
  return thresholds.map((t) => ({ pairwise: evaluatePairwise(pairs, embed, t), shared: evaluateShared(pairs, embed, t) }));
}
