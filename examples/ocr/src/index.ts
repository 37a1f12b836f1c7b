/**
 * PaddleOCR (v4 det + rec, mobile cls) as pure per-stage functions and one orchestrator that calls the models
 * through a caller-supplied `run`, so the same code serves in process and as a graph of shoal deployments.
 *
 * @example
 * ```ts
 * import { readFile } from 'node:fs/promises';
 * import { createLocalRunners, ocr } from '@shoal/example-ocr';
 *
 * const runners = await createLocalRunners();
 * const lines = await ocr(await readFile('receipt.png'), runners);
 * for (const { text, score, box } of lines) console.log(text, score.toFixed(3), JSON.stringify(box));
 * await runners.close();
 * ```
 *
 * Served, each model is its own deployment and `run` sends the batch to it:
 * `ocr(bytes, { run: (model, feeds) => deployments[model].run(feeds) })`. The stages, for a caller that
 * composes them differently:
 *
 *   detPreprocess(image) -> { tensor [1,3,H,W], meta }   detPostprocess(output, meta) -> boxes
 *   cropQuad(image, box) -> crop
 *   clsPreprocess(crops) -> [n,3,48,192]                 clsPostprocess(output) -> [{ angle, score }]
 *   recPreprocess(crops) -> [{ tensor [n,3,48,W], indices }]   recPostprocess(output, charset) -> [{ text, score }]
 */
export { decodeImage, sniffImageFormat, type DecodeImageOptions, type ImageFormat, type RgbImage } from './image.ts';
export { float32Tensor, type FloatTensor, type Tensor } from './tensor.ts';
export type { Point, Quad } from './geometry.ts';
export { detPostprocess, detPreprocess, sortBoxes, type DetBox, type DetInput, type DetMeta, type DetPostprocessOptions, type DetPreprocessOptions } from './det.ts';
export { cropQuad, rotate180, rotate90, type CropOptions } from './crop.ts';
export { applyCls, clsPostprocess, clsPreprocess, type ClsPreprocessOptions, type ClsResult } from './cls.ts';
export {
  checkRecCharset, parseRecDictionary, recBucketWidth, recPostprocess, recPreprocess,
  type RecBatch, type RecPreprocessOptions, type RecResult,
} from './rec.ts';
export { defaultModelPaths, loadRecCharset, OCR_INPUT_NAME, type OcrModelName, type OcrModelPaths } from './models.ts';
export { ocr, ocrWithTimings, type ModelOutputs, type OcrLine, type OcrOptions, type OcrRunners, type OcrTimings, type RunModel } from './ocr.ts';
export { createLocalRunners, type LocalOcrRunners, type LocalRunnersOptions } from './local-runners.ts';
