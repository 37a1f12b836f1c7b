/**
 * shoal: serve many ML models as replicated actors. This package is the one to install: it brings the `shoal`
 * command and re-exports the public API of @shoal/core; the optional parts are subpaths (shoal/onnx, shoal/oip,
 * shoal/native, shoal/cache, shoal/ingress, shoal/broker, shoal/cli).
 *
 *   // app.ts
 *   import { deployment, batch, type Handle, type ShoalRequest } from 'shoal';
 *   class Model {
 *     predict = batch(async (texts: string[]) => texts.map((t) => t.length), { maxBatchSize: 16, maxWaitMs: 5 });
 *   }
 *   class Api {
 *     constructor(private model: Handle<Model>) {}
 *     async fetch(req: ShoalRequest) { return { n: await this.model.predict(req.text()) }; }
 *   }
 *   export default deployment(Api).bind(deployment(Model, { numReplicas: 2 }).bind());
 *   // npx shoal run app.ts  ->  curl -d hello localhost:8000/  ->  {"n":5}
 */
export * from '@shoal/core';
