/**
 * A two-deployment graph: an HTTP ingress that calls a downstream model-like deployment through a typed handle.
 *
 *   shoal run examples/hello/app.ts
 *   curl -s localhost:8000/ -d '{"text":"what a great and happy day"}'
 *   curl -s 'localhost:8000/?text=terrible+awful+service'
 */
import { deployment, response, type Handle, type ShoalRequest } from '@shoal/core';

const LEXICON: Record<string, number> = {
  good: 1, great: 2, happy: 1.5, love: 2, excellent: 2.5, fine: 0.5, nice: 1,
  bad: -1, awful: -2.5, terrible: -2.5, sad: -1.5, hate: -2, poor: -1, slow: -0.5,
};

/** A tiny "model": a bag-of-words linear scorer squashed by a logistic function. */
export class SentimentModel {
  private bias = 0;

  /** userConfig arrives here at start and on every reconfigure, without a restart. */
  reconfigure(config: { bias?: number }): void {
    this.bias = config.bias ?? 0;
  }

  predict(text: string): { label: 'positive' | 'negative' | 'neutral'; score: number; tokens: number } {
    const tokens = text.toLowerCase().match(/[a-z']+/g) ?? [];
    const logit = tokens.reduce((s, t) => s + (LEXICON[t] ?? 0), this.bias);
    const score = 1 / (1 + Math.exp(-logit));
    const label = score > 0.6 ? 'positive' : score < 0.4 ? 'negative' : 'neutral';
    return { label, score: Math.round(score * 1000) / 1000, tokens: tokens.length };
  }

  checkHealth(): void {
    if (!Number.isFinite(this.bias)) throw new Error('bias is not a finite number');
  }
}

export class Api {
  constructor(private readonly model: Handle<SentimentModel>) {}

  async fetch(req: ShoalRequest): Promise<unknown> {
    if (req.path === '/fail') throw new Error('this endpoint always fails (to show errors travel back typed)');
    const text = req.method === 'POST' ? req.json<{ text?: unknown }>().text : req.query.get('text');
    if (typeof text !== 'string' || text.length === 0) {
      return response({ error: 'send {"text": "..."} as a JSON body, or ?text=... in the query' }, { status: 400 });
    }
    const result = await this.model.predict(text);
    return { text, ...result };
  }
}

export default deployment(Api, { numReplicas: 1 }).bind(
  // predict is a pure function of its input: safe to retry on another replica if its worker dies mid-call.
  deployment(SentimentModel, { numReplicas: 2, userConfig: { bias: 0 }, idempotentMethods: ['predict'] }).bind(),
);
