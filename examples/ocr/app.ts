/**
 * OCR as a deployment graph: an HTTP ingress decodes the image and runs the pre- and postprocessing, and each
 * PaddleOCR model (det -> cls -> rec) is its own deployment with its own replicas and dynamic batching, so
 * concurrent requests share model runs and each model scales on its own.
 *
 *   pnpm start                      (= shoal run examples/ocr/app.ts)
 *   curl -s --data-binary @examples/ocr/test/fixtures/two-lines.png localhost:8000/
 *   -> {"lines":[{"text":"Serving models","score":0.99,"box":[[14,22],...]},{"text":"at scale 42",...}]}
 */
import { deployment, HttpError, response, type Handle, type ShoalRequest } from '@shoal/core';
import { onnxDeployment, type Feeds, type OnnxModelInstance } from '@shoal/onnx';
import { defaultModelPaths, ocr, type ModelOutputs, type OcrLine, type OcrModelName, type OcrRunners, type Tensor } from './src/index.ts';

const paths = defaultModelPaths();

// Warm-up shapes per model, so each replica has run its usual input sizes before it reports ready.
const DIM = (i: number): string => `p2o.DynamicDimension.${i}`;

/** Text detection: one image per request, stacked only with images of the same padded size. */
export const det = onnxDeployment({
  name: 'det', model: paths.det, numReplicas: 1, resources: { cpus: 1 },
  batching: { maxBatchSize: 4, maxWaitMs: 2 },
  warmup: { dims: { [DIM(1)]: 128, [DIM(2)]: 480 } },
});

/** Orientation classifier: fixed 48x192 crops, so every request can share a run. */
export const cls = onnxDeployment({
  name: 'cls', model: paths.cls, numReplicas: 1, resources: { cpus: 0.5 },
  batching: { maxBatchSize: 8, maxWaitMs: 2 },
  warmup: { dims: { [DIM(0)]: 6, [DIM(1)]: 48, [DIM(2)]: 192 } },
});

/** Recognition: crops are padded to width buckets, and only equal widths share a run. */
export const rec = onnxDeployment({
  name: 'rec', model: paths.rec, numReplicas: 1, resources: { cpus: 1 },
  batching: { maxBatchSize: 8, maxWaitMs: 2 },
  warmup: { dims: { [DIM(0)]: 1, [DIM(1)]: 320 } },
});

const USAGE = 'POST a PNG or JPEG image as the request body; the answer is {"lines": [{"text", "score", "box"}]}\n';

/** The ingress: decode, det, crop, cls, rec, through the three model handles. */
export class OcrApi {
  private readonly runners: OcrRunners;

  constructor(det: Handle<OnnxModelInstance>, cls: Handle<OnnxModelInstance>, rec: Handle<OnnxModelInstance>) {
    const models: Record<OcrModelName, Handle<OnnxModelInstance>> = { det, cls, rec };
    this.runners = { run: (model: OcrModelName, feeds: Readonly<Record<string, Tensor>>) => models[model].infer(feeds as Feeds) as Promise<ModelOutputs> };
  }

  async fetch(req: ShoalRequest): Promise<unknown> {
    if (req.method === 'GET') return response(USAGE);
    if (req.method !== 'POST') throw new HttpError(405, `${req.method} is not allowed; ${USAGE}`);
    if (req.body.byteLength === 0) throw new HttpError(400, `the request has no body; ${USAGE}`);
    const lines: OcrLine[] = await ocr(req.body, this.runners);
    return { lines: lines.map((l) => ({ text: l.text, score: Math.round(l.score * 1e4) / 1e4, box: l.box.map(([x, y]) => [Math.round(x), Math.round(y)]) })) };
  }
}

export default deployment(OcrApi, { name: 'ocr', resources: { cpus: 0.5 }, maxRequestBytes: 16 * 1024 * 1024 }).bind(det.bind(), cls.bind(), rec.bind());
