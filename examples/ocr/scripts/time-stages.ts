/**
 * Runs the OCR pipeline with in-process runners over the test fixtures and prints the median time of each
 * stage over a few runs, after one warm-up pass over every image, and what was read. Not a test: timings are
 * never asserted.
 *
 *   cd examples/ocr && ../../node_modules/.bin/tsx scripts/time-stages.ts [image ...]
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLocalRunners, ocr, ocrWithTimings, type OcrTimings } from '../src/index.ts';

const RUNS = 5;
const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures');
const files = process.argv.length > 2
  ? process.argv.slice(2)
  : ['hello.png', 'date.png', 'two-lines.png', 'price.jpg', 'tilted.png', 'upside-down.png'].map((f) => path.join(fixtures, f));

const runners = await createLocalRunners();
const images = await Promise.all(files.map(async (file) => ({ name: path.basename(file), bytes: await readFile(file) })));
for (const { bytes } of images) await ocr(bytes, runners);

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: { name: string; timings: Record<string, number>; text: string }[] = [];
for (const { name, bytes } of images) {
  const runs: OcrTimings[] = [];
  let text = '';
  for (let i = 0; i < RUNS; i++) {
    const { lines, timings } = await ocrWithTimings(bytes, runners);
    runs.push(timings);
    text = lines.map((l) => `${JSON.stringify(l.text)} (${l.score.toFixed(3)})`).join(' | ');
  }
  const keys = Object.keys(runs[0]!) as (keyof OcrTimings)[];
  rows.push({ name, text, timings: Object.fromEntries(keys.map((k) => [k, median(runs.map((r) => r[k]))])) });
}
await runners.close();

const keys = Object.keys(rows[0]?.timings ?? {});
const cell = (s: string, w = 9): string => s.padStart(w);
console.log(cell('image', 16) + keys.map((k) => cell(k.replace(/Ms$/, ''))).join(''));
for (const r of rows) console.log(cell(r.name, 16) + keys.map((k) => cell(r.timings[k]!.toFixed(1))).join(''));
console.log(`(milliseconds, median of ${RUNS} runs after a warm-up pass)`);
for (const r of rows) console.log(`${r.name}: ${r.text}`);
