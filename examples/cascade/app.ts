/**
 * Cascade routing: a cheap keyword model answers what it is sure of, and a slower model that reads negations and
 * intensifiers answers the rest. A sample of the confident answers is checked against the slow model in the
 * background, so the metrics say how often the cheap model's confident answers are right.
 *
 *   shoal run examples/cascade/app.ts
 *   curl -si localhost:8000/ -d '{"text":"what a great and happy day"}'  -> x-shoal-cascade-model: small
 *   curl -si localhost:8000/ -d '{"text":"fine, I guess"}'               -> x-shoal-cascade-model: large (confidence 0.245)
 *   curl -si localhost:8000/ -d '{"text":"not good, not good at all"}'   -> small, confidently wrong: what audits count
 *   curl -s localhost:8000/stats                                         -> escalationRate, audits, latencySaved
 *   curl -s localhost:8000/-/metrics | grep shoal_cascade_
 */
import { cascade, deployment } from '@shoal/core';

export interface Text { text: string }
export interface Sentiment { label: 'positive' | 'negative'; confidence: number; model: string }

const LEXICON: Record<string, number> = {
  good: 1, great: 2, happy: 1.5, love: 2, excellent: 2.5, fine: 0.5, nice: 1,
  bad: -1, awful: -2.5, terrible: -2.5, sad: -1.5, hate: -2, poor: -1, slow: -0.5,
};
const NEGATIONS = new Set(['not', 'never', "isn't", "wasn't", "don't", 'no']);
const INTENSIFIERS: Record<string, number> = { very: 1.5, really: 1.5, extremely: 2, slightly: 0.5 };

function tokens(text: string): string[] {
  return text.toLowerCase().match(/[a-z']+/g) ?? [];
}

/** Squashes a score into a label and a confidence in [0, 1] (0: a coin toss, 1: certain). */
function judge(score: number, model: string): Sentiment {
  const p = 1 / (1 + Math.exp(-score));
  return { label: p >= 0.5 ? 'positive' : 'negative', confidence: Math.round(Math.abs(2 * p - 1) * 1000) / 1000, model };
}

/** The small model: sums word scores. Fast, and blind to "not". */
export class KeywordModel {
  predict(input: Text): Sentiment {
    return judge(tokens(input.text).reduce((s, t) => s + (LEXICON[t] ?? 0), 0), 'keywords');
  }
}

/** The large model: flips the word after a negation and scales the one after an intensifier. Slow on purpose. */
export class ContextModel {
  async predict(input: Text): Promise<Sentiment> {
    await new Promise((r) => setTimeout(r, 30));  // stands in for a model a hundred times bigger
    let score = 0;
    let sign = 1;
    let gain = 1;
    for (const t of tokens(input.text)) {
      if (NEGATIONS.has(t)) { sign = -1; continue; }
      if (t in INTENSIFIERS) { gain = INTENSIFIERS[t]!; continue; }
      const w = LEXICON[t];
      if (w !== undefined) { score += sign * gain * w; sign = 1; gain = 1; }
    }
    return { ...judge(score, 'context'), confidence: 1 };
  }
}

export default cascade({
  name: 'sentiment',
  small: deployment(KeywordModel, { numReplicas: 2, resources: { cpus: 0.5 } }).bind(),
  large: deployment(ContextModel, { numReplicas: 1, resources: { cpus: 1 } }).bind(),
  method: 'predict',
  confidence: (out) => out.confidence,
  // A keyword score of about 1.4 or more either way (one strong word) is trusted.
  threshold: 0.6,
  auditSampleRate: 0.1,
  agree: (a, b) => a.label === b.label,
  deployment: { numReplicas: 1, resources: { cpus: 0.5 } },
});
