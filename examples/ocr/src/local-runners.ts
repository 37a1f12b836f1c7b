/**
 * In-process runners: one onnxruntime-node session per model, on the calling thread. For tests, scripts and
 * as the reference a served graph is compared against; a served graph runs each model in its own deployment.
 */
import { BackendError, IllegalStateError, NotFoundError } from '@shoal/core';
import type { InferenceSession } from 'onnxruntime-node';
import { defaultModelPaths, type OcrModelName } from './models.ts';
import type { ModelOutputs, OcrRunners } from './ocr.ts';
import type { Tensor } from './tensor.ts';

export interface LocalRunnersOptions {
  /** Model files by name. @default the bundled PaddleOCR v4 files, from defaultModelPaths() */
  models?: Partial<Record<OcrModelName, string>>;
  /** onnxruntime intra-op threads per session; undefined lets onnxruntime choose. @default undefined */
  intraOpNumThreads?: number;
}

export interface LocalOcrRunners extends OcrRunners {
  /** Releases the sessions; later runs throw IllegalStateError. */
  close(): Promise<void>;
}

const MODELS: readonly OcrModelName[] = ['det', 'cls', 'rec'];

/** Loads the det, cls and rec sessions. */
export async function createLocalRunners(opts: LocalRunnersOptions = {}): Promise<LocalOcrRunners> {
  const defaults = defaultModelPaths();
  const paths: Record<OcrModelName, string> = { det: defaults.det, cls: defaults.cls, rec: defaults.rec, ...opts.models };
  // Loaded lazily so importing this package's pure functions never loads the native runtime.
  const ort = await import('onnxruntime-node');
  const sessionOptions: InferenceSession.SessionOptions = { graphOptimizationLevel: 'all' };
  if (opts.intraOpNumThreads !== undefined) sessionOptions.intraOpNumThreads = opts.intraOpNumThreads;
  const load = async (model: OcrModelName): Promise<InferenceSession> => {
    try {
      return await ort.InferenceSession.create(paths[model], sessionOptions);
    } catch (err) {
      throw new BackendError(`failed to load the ${model} model from ${paths[model]}: ${(err as Error).message}`, { model, file: paths[model] });
    }
  };
  const loaded = await Promise.allSettled(MODELS.map(load));
  const sessions = new Map<OcrModelName, InferenceSession>();
  loaded.forEach((r, i) => {
    if (r.status === 'fulfilled') sessions.set(MODELS[i]!, r.value);
  });
  const failure = loaded.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure !== undefined) {
    await Promise.all([...sessions.values()].map((s) => s.release()));
    throw failure.reason;
  }

  let state: 'open' | 'closed' = 'open';
  return {
    run: async (model: OcrModelName, feeds: Readonly<Record<string, Tensor>>): Promise<ModelOutputs> => {
      if (state !== 'open') throw new IllegalStateError(`cannot run model "${model}": the local runners are ${state}`);
      const session = sessions.get(model);
      if (session === undefined) throw new NotFoundError(`no model "${model}"; have ${MODELS.join(', ')}`);
      const ortFeeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
      for (const [name, t] of Object.entries(feeds)) ortFeeds[name] = new ort.Tensor('float32', t.data, t.dims);
      let out: InferenceSession.ReturnType;
      try {
        out = await session.run(ortFeeds);
      } catch (err) {
        throw new BackendError(`${model} run failed: ${(err as Error).message}`, { model });
      }
      return Object.fromEntries(Object.entries(out).map(([name, t]) => [name, { type: t.type, dims: t.dims, data: t.data }]));
    },
    close: async () => {
      if (state === 'closed') return;
      state = 'closed';
      await Promise.all([...sessions.values()].map((s) => s.release()));
    },
  };
}
