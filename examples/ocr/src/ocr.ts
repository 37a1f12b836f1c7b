/**
 * The OCR orchestrator: decode -> det -> crop -> cls -> rec, with every model call going through a
 * caller-supplied `run`. The same code drives in-process onnxruntime sessions (see local-runners.ts) and three
 * remote shoal deployments; only `run` differs.
 */
import { BackendError, BatchSizeMismatchError, InvalidOptionError } from '@shoal/core';
import { applyCls, clsPostprocess, clsPreprocess, type ClsPreprocessOptions, type ClsResult } from './cls.ts';
import { cropQuad, type CropOptions } from './crop.ts';
import { detPostprocess, detPreprocess, type DetPostprocessOptions, type DetPreprocessOptions } from './det.ts';
import type { Quad } from './geometry.ts';
import { decodeImage, type DecodeImageOptions, type RgbImage } from './image.ts';
import { loadRecCharset, OCR_INPUT_NAME, type OcrModelName } from './models.ts';
import { recPostprocess, recPreprocess, type RecPreprocessOptions, type RecResult } from './rec.ts';
import type { FloatTensor, Tensor } from './tensor.ts';

/** A model's outputs by name. `data` is checked to be a Float32Array where it is read. */
export type ModelOutputs = Readonly<Record<string, { readonly type?: string; readonly dims: readonly number[]; readonly data: unknown }>>;

/**
 * Runs one model on one batch. `feeds` is `{ x: tensor }` (the PaddleOCR models' input name,
 * {@link OCR_INPUT_NAME}); the model's single output is read, whatever its name. A @shoal/onnx pool's
 * `run(feeds)` fits as it is.
 */
export type RunModel = (model: OcrModelName, feeds: Readonly<Record<string, Tensor>>) => Promise<ModelOutputs>;

export interface OcrRunners {
  readonly run: RunModel;
}

export interface OcrOptions {
  /** CTC character set of the rec model. @default the bundled ppocr_keys_v1.txt, via loadRecCharset() */
  charset?: readonly string[];
  /** Run the 0/180 degree classifier on every crop. @default true */
  useCls?: boolean;
  /** Crops are turned when cls says 180 above this score (PaddleOCR's cls_thresh). @default 0.9 */
  clsThresh?: number;
  /** Crops per cls run (PaddleOCR's cls_batch_num). @default 6 */
  clsBatchSize?: number;
  /** Lines whose recognition score is below this are dropped (PaddleOCR's drop_score). @default 0.5 */
  dropScore?: number;
  /** cls or rec batches of one image in flight at once. @default 4 */
  maxConcurrentRuns?: number;
  /** Image decoding limits. @default {} */
  decode?: DecodeImageOptions;
  /** Detector input sizing. @default {} */
  det?: DetPreprocessOptions;
  /** Detector (DB) postprocess thresholds. @default {} */
  db?: DetPostprocessOptions;
  /** Cutting lines out of the image. @default {} */
  crop?: CropOptions;
  /** Classifier input size. @default {} */
  cls?: ClsPreprocessOptions;
  /** Rec input sizing, width buckets and batch size. @default {} */
  rec?: RecPreprocessOptions;
}

export interface OcrLine {
  readonly text: string;
  /** Recognition confidence: mean CTC probability of the kept characters. */
  readonly score: number;
  /** Corners in original-image pixels: top-left, top-right, bottom-right, bottom-left. */
  readonly box: Quad;
}

/** Wall-clock milliseconds spent in each stage of one call; `*RunMs` include the transport to a remote model. */
export interface OcrTimings {
  decodeMs: number;
  detPreMs: number;
  detRunMs: number;
  detPostMs: number;
  cropMs: number;
  clsPreMs: number;
  clsRunMs: number;
  clsPostMs: number;
  recPreMs: number;
  recRunMs: number;
  recPostMs: number;
  totalMs: number;
}

/** Lines of text found in a PNG or JPEG, in reading order. */
export async function ocr(image: Uint8Array, runners: OcrRunners, opts: OcrOptions = {}): Promise<OcrLine[]> {
  return (await ocrWithTimings(image, runners, opts)).lines;
}

/** As {@link ocr}, with the time spent in each stage. */
export async function ocrWithTimings(
  image: Uint8Array,
  runners: OcrRunners,
  opts: OcrOptions = {},
): Promise<{ lines: OcrLine[]; timings: OcrTimings }> {
  const useCls = opts.useCls ?? true;
  const clsThresh = opts.clsThresh ?? 0.9;
  const clsBatchSize = opts.clsBatchSize ?? 6;
  const dropScore = opts.dropScore ?? 0.5;
  const maxConcurrentRuns = opts.maxConcurrentRuns ?? 4;
  if (!(clsThresh >= 0 && clsThresh <= 1)) throw new InvalidOptionError('clsThresh', 'must be in [0, 1]', clsThresh);
  if (!Number.isInteger(clsBatchSize) || clsBatchSize < 1) throw new InvalidOptionError('clsBatchSize', 'must be a positive integer', clsBatchSize);
  if (!(dropScore >= 0 && dropScore <= 1)) throw new InvalidOptionError('dropScore', 'must be in [0, 1]', dropScore);
  if (!Number.isInteger(maxConcurrentRuns) || maxConcurrentRuns < 1) {
    throw new InvalidOptionError('maxConcurrentRuns', 'must be a positive integer', maxConcurrentRuns);
  }
  const charset = opts.charset ?? (await loadRecCharset());

  const timings: OcrTimings = {
    decodeMs: 0, detPreMs: 0, detRunMs: 0, detPostMs: 0, cropMs: 0, clsPreMs: 0, clsRunMs: 0, clsPostMs: 0,
    recPreMs: 0, recRunMs: 0, recPostMs: 0, totalMs: 0,
  };
  const t0 = performance.now();
  let t = t0;
  const lap = (key: Exclude<keyof OcrTimings, 'totalMs'>): void => {
    const now = performance.now();
    timings[key] += now - t;
    t = now;
  };
  const runBatch = async (model: OcrModelName, input: Tensor): Promise<FloatTensor> => {
    const out = soleOutput(model, await runners.run(model, { [OCR_INPUT_NAME]: input }));
    if (out.dims[0] !== input.dims[0]) {
      throw new BatchSizeMismatchError(`${model} returned a batch of ${out.dims[0]} for an input batch of ${input.dims[0]} (output dims [${out.dims.join(',')}])`);
    }
    return out;
  };

  const rgb = decodeImage(image, opts.decode);
  lap('decodeMs');
  const det = detPreprocess(rgb, opts.det);
  lap('detPreMs');
  const prob = await runBatch('det', det.tensor);
  lap('detRunMs');
  const boxes = detPostprocess(prob, det.meta, opts.db);
  lap('detPostMs');
  let crops: RgbImage[] = boxes.map((b) => cropQuad(rgb, b.box, opts.crop));
  lap('cropMs');

  if (useCls && crops.length > 0) {
    const inputs: Tensor[] = [];
    for (let start = 0; start < crops.length; start += clsBatchSize) inputs.push(clsPreprocess(crops.slice(start, start + clsBatchSize), opts.cls));
    lap('clsPreMs');
    const outputs = await mapLimit(inputs, maxConcurrentRuns, (input) => runBatch('cls', input));
    lap('clsRunMs');
    const angles: ClsResult[] = outputs.flatMap((out) => clsPostprocess(out));
    crops = crops.map((c, i) => applyCls(c, angles[i]!, clsThresh));
    lap('clsPostMs');
  }

  const batches = recPreprocess(crops, opts.rec);
  lap('recPreMs');
  const outputs = await mapLimit(batches, maxConcurrentRuns, (b) => runBatch('rec', b.tensor));
  lap('recRunMs');
  const texts = new Array<RecResult>(crops.length);
  batches.forEach((batch, b) => {
    recPostprocess(outputs[b]!, charset).forEach((r, k) => {
      texts[batch.indices[k]!] = r;
    });
  });
  const lines: OcrLine[] = [];
  boxes.forEach(({ box }, i) => {
    const { text, score } = texts[i]!;
    if (score >= dropScore) lines.push({ text, score, box });
  });
  lap('recPostMs');
  timings.totalMs = performance.now() - t0;
  return { lines, timings };
}

function soleOutput(model: OcrModelName, outputs: ModelOutputs): FloatTensor {
  const entries = Object.entries(outputs);
  const [first] = entries;
  if (first === undefined || entries.length !== 1) {
    throw new BackendError(`${model} returned ${entries.length} outputs (${entries.map(([n]) => n).join(', ')}), expected 1`, { model });
  }
  const [name, { data, dims }] = first;
  if (!(data instanceof Float32Array)) {
    throw new BackendError(`${model} output "${name}" holds ${describeData(data)}, expected a Float32Array`, { model, output: name });
  }
  return { data, dims };
}

function describeData(data: unknown): string {
  if (data === null || typeof data !== 'object') return typeof data;
  return data.constructor?.name ?? 'an object';
}

/** Maps with at most `limit` calls in flight; after the first failure no new calls start. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await fn(items[i]!);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
