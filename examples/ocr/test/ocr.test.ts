/**
 * The orchestrator against fake runners: how results are scattered back to their boxes, the bound on runs in
 * flight, and the typed errors for runners that answer with the wrong thing. The real models are in
 * pipeline.test.ts.
 */
import { BackendError, BatchSizeMismatchError, InvalidOptionError } from '@shoal/core';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { ocr, type ModelOutputs, type OcrModelName, type OcrRunners, type Quad, type Tensor } from '../src/index.ts';

const DIGITS = ['', ...'0123456789', ' '];

function whitePng(width: number, height: number): Buffer {
  const png = new PNG({ width, height });
  png.data.fill(255);
  return PNG.sync.write(png);
}

/** Det answers with one box per [x0, y0, x1, y1] rectangle of the map; cls says upright. */
function fakeDet(input: Tensor, rects: readonly (readonly [number, number, number, number])[]): ModelOutputs {
  const [, , h = 0, w = 0] = input.dims;
  const data = new Float32Array(h * w);
  for (const [x0, y0, x1, y1] of rects) for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) data[y * w + x] = 0.9;
  return { prob: { type: 'float32', data, dims: [1, 1, h, w] } };
}

function fakeCls(input: Tensor): ModelOutputs {
  const n = input.dims[0]!;
  const data = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) data[2 * i] = 1;
  return { softmax: { type: 'float32', data, dims: [n, 2] } };
}

/** Rec "reads" every item as the batch's width in decimal, one digit per two CTC steps. */
function fakeRec(input: Tensor): ModelOutputs {
  const n = input.dims[0]!;
  const digits = String(input.dims[3]).split('').map((d) => DIGITS.indexOf(d));
  const steps = 2 * digits.length;
  const classes = DIGITS.length;
  const data = new Float32Array(n * steps * classes);
  for (let i = 0; i < n; i++) {
    digits.forEach((k, j) => {
      data[(i * steps + 2 * j) * classes + k] = 1;
      data[(i * steps + 2 * j + 1) * classes] = 1;
    });
  }
  return { softmax: { type: 'float32', data, dims: [n, steps, classes] } };
}

function fakeRunners(rects: readonly (readonly [number, number, number, number])[], rec = fakeRec): OcrRunners & { maxInFlight: number } {
  let inFlight = 0;
  const self = {
    maxInFlight: 0,
    run: async (model: OcrModelName, feeds: Readonly<Record<string, Tensor>>): Promise<ModelOutputs> => {
      const x = feeds['x']!;
      inFlight++;
      self.maxInFlight = Math.max(self.maxInFlight, inFlight);
      try {
        await new Promise((r) => setTimeout(r, 2));
        return model === 'det' ? fakeDet(x, rects) : model === 'cls' ? fakeCls(x) : rec(x);
      } finally {
        inFlight--;
      }
    },
  };
  return self;
}

const recWidth = (box: Quad): number => {
  const [tl, tr, , bl] = box;
  return Math.ceil((48 * Math.trunc(Math.hypot(tr[0] - tl[0], tr[1] - tl[1]))) / Math.trunc(Math.hypot(bl[0] - tl[0], bl[1] - tl[1])));
};

describe('ocr orchestration', () => {
  // A 320x160 image maps 1:1 onto the det input; three lines of different lengths, top to bottom.
  const image = whitePng(320, 160);
  const rects = [[10, 10, 100, 21], [10, 60, 300, 71], [10, 110, 180, 121]] as const;
  const opts = { charset: DIGITS, rec: { maxBatchSize: 1, widthMultiple: 1, minWidth: 0 }, maxConcurrentRuns: 2 };

  it('gives each box the rec result of its own crop, in reading order, whatever order the batches ran in', async () => {
    const lines = await ocr(image, fakeRunners(rects), opts);
    expect(lines).toHaveLength(3);
    expect(lines.map((l) => l.box[0][1])).toEqual([...lines.map((l) => l.box[0][1])].sort((a, b) => a - b));
    for (const { text, box } of lines) expect(text).toBe(String(recWidth(box)));
    expect(new Set(lines.map((l) => l.text)).size).toBe(3);
  });

  it('keeps at most maxConcurrentRuns batches in flight', async () => {
    const many = Array.from({ length: 7 }, (_, i) => [10, 4 + 22 * i, 60 + 30 * i, 12 + 22 * i] as const);
    const runners = fakeRunners(many);
    expect(await ocr(image, runners, opts)).toHaveLength(7);
    expect(runners.maxInFlight).toBe(2);
  });

  it('names the model and the numbers when a runner answers with the wrong thing', async () => {
    const wrongBatch = fakeRunners(rects, (x) => fakeRec({ ...x, dims: [1, ...x.dims.slice(1)] }));
    const oneBatch = { ...opts, rec: { minWidth: 1024 } }; // all three crops in one bucket
    await expect(ocr(image, wrongBatch, oneBatch)).rejects.toThrow(BatchSizeMismatchError);
    await expect(ocr(image, wrongBatch, oneBatch)).rejects.toThrow(/rec returned a batch of 1 for an input batch of 3/);

    const twoOutputs = fakeRunners(rects, (x) => ({ ...fakeRec(x), extra: fakeRec(x)['softmax']! }));
    await expect(ocr(image, twoOutputs, opts)).rejects.toThrow(BackendError);
    await expect(ocr(image, twoOutputs, opts)).rejects.toThrow(/rec returned 2 outputs \(softmax, extra\), expected 1/);

    const float64 = fakeRunners(rects, (x) => ({ out: { dims: fakeRec(x)['softmax']!.dims, data: new Float64Array(1) } }));
    await expect(ocr(image, float64, opts)).rejects.toThrow(/rec output "out" holds Float64Array, expected a Float32Array/);
  });

  it('names bad options', async () => {
    const runners = fakeRunners(rects);
    await expect(ocr(image, runners, { maxConcurrentRuns: 0 })).rejects.toThrow(InvalidOptionError);
    await expect(ocr(image, runners, { maxConcurrentRuns: 0 })).rejects.toThrow(/maxConcurrentRuns/);
    await expect(ocr(image, runners, { clsBatchSize: 1.5 })).rejects.toThrow(/clsBatchSize/);
    await expect(ocr(image, runners, { dropScore: 2 })).rejects.toThrow(/dropScore/);
  });
});
