/**
 * Model multiplexing: one deployment serves many models by id. Each of its two replicas keeps at most two models
 * loaded and evicts the least recently used; routers send a request to a replica holding its model, and spread a
 * model to the other replica when it gets hot. The HTTP header x-shoal-model-id names the model; the ingress
 * deployment below does not look at it: its handle calls inherit it.
 *
 *   shoal run examples/multiplex/app.ts
 *   curl -s localhost:8000/predict -H 'x-shoal-model-id: reviews-en' -d '{"text":"great food, slow service"}'
 *   curl -s localhost:8000/embed -H 'x-shoal-model-id: reviews-de' -d '{"text":"guter Kaffee"}'
 *   curl -s localhost:8000/predict -d '{"text":"which model?"}'      (400: names no model)
 *
 * Every answer says which replica served it and what that replica holds, least recently used first, with its
 * load and unload counts: watch a third model evict the least recently used one.
 */
import { batch, deployment, getModel, requestContext, response, type Handle, type ShoalRequest } from '@shoal/core';

/** A toy model: word weights drawn from a hash of the model id and the word, as if each tenant had trained its own. */
export class ToyModel {
  constructor(readonly id: string) {}

  /** A sentiment-like score in (0, 1). */
  score(text: string): number {
    const logit = words(text).reduce((s, w) => s + this.weight(w), 0);
    return Math.round(1000 / (1 + Math.exp(-logit))) / 1000;
  }

  /** A 4-number embedding: the mean of the words' weight vectors. */
  embed(text: string): number[] {
    const ws = words(text);
    return [0, 1, 2, 3].map((k) => Math.round((1000 * ws.reduce((s, w) => s + this.weight(`${w}#${k}`), 0)) / Math.max(1, ws.length)) / 1000);
  }

  private weight(word: string): number {
    let h = 2166136261;
    for (const c of `${this.id}\u0000${word}`) h = Math.imul(h ^ c.charCodeAt(0), 16777619);
    return ((h >>> 0) / 0xffffffff) * 2 - 1;
  }
}

function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}']+/gu) ?? [];
}

/** What this replica holds by its own account (its load and unload hooks), reported with every answer. */
export interface Holdings {
  replica: string;
  /** Least recently used first. */
  held: string[];
  loads: Record<string, number>;
  unloads: Record<string, number>;
}

export interface Prediction extends Holdings { model: string; score: number }
export interface Embedding { model: string; vector: number[]; batchSize: number }

export class Models {
  private readonly held: string[] = [];
  private readonly loads: Record<string, number> = {};
  private readonly unloads: Record<string, number> = {};
  /** How long loading a model takes (reading its weights); userConfig `{ loadDelayMs }` changes it. */
  private loadDelayMs = 20;

  reconfigure(config: { loadDelayMs?: number } | undefined): void {
    this.loadDelayMs = config?.loadDelayMs ?? 20;
  }

  /** Called by shoal the first time a request needs `modelId` on this replica (concurrent requests share one call). */
  async loadModel(modelId: string): Promise<ToyModel> {
    await new Promise((r) => setTimeout(r, this.loadDelayMs));
    this.loads[modelId] = (this.loads[modelId] ?? 0) + 1;
    this.held.push(modelId);
    return new ToyModel(modelId);
  }

  /** Called when `modelId` is evicted, once the requests using it have finished. */
  unloadModel(modelId: string): void {
    this.unloads[modelId] = (this.unloads[modelId] ?? 0) + 1;
    const i = this.held.indexOf(modelId);
    if (i >= 0) this.held.splice(i, 1);
  }

  /** `holdMs`: how long the model works on it (a slow model, to make one hot). */
  async predict(input: { text: string; holdMs?: number }): Promise<Prediction> {
    const model = await getModel<ToyModel>();
    this.touch(model.id);
    const holdMs = Math.min(10_000, Math.max(0, Number(input.holdMs ?? 0)));
    if (holdMs > 0) await new Promise((r) => setTimeout(r, holdMs));
    return { model: model.id, score: model.score(input.text), ...this.holdings() };
  }

  /** A batched method: a batch only ever holds requests for one model, the one getModel() returns here. */
  embed = batch<string, Embedding>(async (texts) => {
    const model = await getModel<ToyModel>();
    this.touch(model.id);
    return texts.map((t) => ({ model: model.id, vector: model.embed(t), batchSize: texts.length }));
  }, { maxBatchSize: 16, maxWaitMs: 5 });

  holdings(): Holdings {
    return { replica: requestContext()?.replicaId ?? '', held: [...this.held], loads: { ...this.loads }, unloads: { ...this.unloads } };
  }

  /** Keeps `held` in the cache's order: the model a request used is now the most recently used. */
  private touch(modelId: string): void {
    const i = this.held.indexOf(modelId);
    if (i >= 0) { this.held.splice(i, 1); this.held.push(modelId); }
  }
}

export class Api {
  constructor(private readonly models: Handle<Models>) {}

  async fetch(req: ShoalRequest): Promise<unknown> {
    if (req.method !== 'POST' || (req.path !== '/predict' && req.path !== '/embed')) {
      return response({ error: 'POST /predict or /embed {"text": "..."} with the header x-shoal-model-id' }, { status: 404 });
    }
    const body = req.json<{ text?: unknown; holdMs?: unknown }>();
    if (typeof body.text !== 'string') return response({ error: 'send {"text": "..."}' }, { status: 400 });
    // No model id passed here: the handle call inherits this request's (its x-shoal-model-id header).
    if (req.path === '/embed') return this.models.embed(body.text);
    return this.models.predict({ text: body.text, ...(typeof body.holdMs === 'number' ? { holdMs: body.holdMs } : {}) });
  }
}

export const Multiplexed = deployment(Models, { numReplicas: 2, maxOngoingRequests: 8, multiplex: { maxModelsPerReplica: 2 } });

export default deployment(Api, { resources: { cpus: 0.5 } }).bind(Multiplexed.bind());
