/**
 * End to end on the committed fixtures (see fixtures/README.md) with the real PaddleOCR models on CPU. The
 * models are small (16 MB in all) and the whole file runs in a few seconds, so it is not gated behind a flag.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BadRequestError } from '@shoal/core';
import * as ort from 'onnxruntime-node';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createLocalRunners, defaultModelPaths, ocr, ocrWithTimings, parseRecDictionary, type LocalOcrRunners, type OcrModelName,
  type OcrRunners,
} from '../src/index.ts';
import { EXPECTED_TEXT as EXPECTED } from './expected.ts';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const read = (name: string): Buffer => readFileSync(path.join(fixtures, name));


describe('ocr with in-process runners', () => {
  let runners: LocalOcrRunners;
  beforeAll(async () => {
    runners = await createLocalRunners({ intraOpNumThreads: 2 });
  });
  afterAll(async () => {
    await runners?.close();
  });

  for (const [file, texts] of Object.entries(EXPECTED)) {
    it(`reads ${file} as ${JSON.stringify(texts)}`, async () => {
      const lines = await ocr(read(file), runners);
      expect(lines.map((l) => l.text)).toEqual(texts);
      for (const l of lines) expect(l.score).toBeGreaterThan(0.9);
    });
  }

  it('returns boxes inside the image, in reading order', async () => {
    const lines = await ocr(read('two-lines.png'), runners);
    for (const { box } of lines) {
      for (const [x, y] of box) {
        expect(x).toBeGreaterThanOrEqual(0);
        expect(x).toBeLessThanOrEqual(480);
        expect(y).toBeGreaterThanOrEqual(0);
        expect(y).toBeLessThanOrEqual(128);
      }
    }
    // Line 1 sits around y = 24..46, line 2 around y = 80..102 (baselines at 46 and 102, 30pt).
    expect(lines[0]!.box[0][1]).toBeLessThan(30);
    expect(lines[1]!.box[0][1]).toBeGreaterThan(60);
    expect(lines[0]!.box[2][1]).toBeLessThan(lines[1]!.box[0][1]);
  });

  it('reads the same through a runner that copies every tensor as a remote deployment would', async () => {
    const calls: { model: OcrModelName; dims: readonly number[] }[] = [];
    const remote: OcrRunners = {
      run: async (model, feeds) => {
        calls.push({ model, dims: feeds['x']!.dims });
        return structuredClone(await runners.run(model, structuredClone(feeds)));
      },
    };
    const image = read('two-lines.png');
    expect(await ocr(image, remote)).toEqual(await ocr(image, runners));
    // "Serving models" is ~330 px wide at height 48, "at scale 42" under 320: two buckets, widest first.
    expect(calls).toEqual([
      { model: 'det', dims: [1, 3, 128, 480] },
      { model: 'cls', dims: [2, 3, 48, 192] },
      { model: 'rec', dims: [1, 3, 48, 384] },
      { model: 'rec', dims: [1, 3, 48, 320] },
    ]);
  });

  it('reads upright lines the same without cls and in rec batches of one, but needs cls for upside-down text', async () => {
    const opts = { useCls: false, rec: { maxBatchSize: 1 } };
    const calls: { model: OcrModelName; batch: number | undefined }[] = [];
    const spy: OcrRunners = { run: (model, feeds) => { calls.push({ model, batch: feeds['x']!.dims[0] }); return runners.run(model, feeds); } };
    expect((await ocr(read('two-lines.png'), spy, opts)).map((l) => l.text)).toEqual(EXPECTED['two-lines.png']);
    expect(calls).toEqual([{ model: 'det', batch: 1 }, { model: 'rec', batch: 1 }, { model: 'rec', batch: 1 }]);
    // Upside down, the line is still found, but read as something else and with low confidence.
    const flipped = await ocr(read('upside-down.png'), runners, opts);
    expect(flipped).toHaveLength(1);
    expect(flipped[0]!.text).not.toBe(EXPECTED['upside-down.png']![0]);
    expect(flipped[0]!.score).toBeLessThan(0.9);
  });

  it('returns no lines for a blank page and a typed error for bytes that are not an image', async () => {
    const png = new PNG({ width: 200, height: 100 });
    png.data.fill(255);
    expect(await ocr(PNG.sync.write(png), runners)).toEqual([]);
    await expect(ocr(Buffer.from('not an image'), runners)).rejects.toThrow(BadRequestError);
  });

  it('reports a time for every stage', async () => {
    const { timings } = await ocrWithTimings(read('hello.png'), runners);
    expect(timings.totalMs).toBeGreaterThan(0);
    expect(timings.detRunMs + timings.recRunMs).toBeLessThanOrEqual(timings.totalMs);
  });
});

describe('ppocr_keys_v1.txt against ch_PP-OCRv4_rec', () => {
  it('has exactly as many classes as the model outputs: lines + blank + space', async () => {
    const paths = defaultModelPaths();
    const lines = readFileSync(paths.dict, 'utf8').split('\n').filter((l, i, all) => i < all.length - 1 || l !== '');
    const session = await ort.InferenceSession.create(paths.rec);
    try {
      const input = new ort.Tensor('float32', new Float32Array(3 * 48 * 320), [1, 3, 48, 320]);
      const out = await session.run({ [session.inputNames[0]!]: input });
      const dims = out[session.outputNames[0]!]!.dims;
      expect(dims[2]).toBe(lines.length + 2);
      expect(parseRecDictionary(readFileSync(paths.dict, 'utf8'))).toHaveLength(dims[2]!);
    } finally {
      await session.release();
    }
  });
});
