/**
 * A batch run killed with SIGKILL mid-run (no chance to write a final checkpoint), then run again: every input line
 * is in the output exactly once, in order, whatever the killed process had written past its last checkpoint.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { runBatch } from '../src/batch/run-batch.ts';
import { checkpointPathFor, readCheckpoint } from '../src/batch/checkpoint.ts';

const CHILD = resolve(import.meta.dirname, 'batch-child.ts');
const TSX = createRequire(import.meta.url).resolve('tsx');

let dir: string;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'shoal-batch-kill-')); });
afterEach(() => { rmSync(dir, { recursive: true, force: true }); });

it('resumes after SIGKILL with every line exactly once, in order', async () => {
  const n = 20_000;
  const inPath = join(dir, 'in.jsonl');
  writeFileSync(inPath, Array.from({ length: n }, (_, i) => `${i}\n`).join(''));
  const out = join(dir, 'out.jsonl');
  const child = spawn(process.execPath, ['--import', TSX, CHILD, inPath, out], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = once(child, 'exit');
  const cpPath = checkpointPathFor(out);
  let cpLine = 0;
  const end = Date.now() + 30_000;
  while (cpLine < 2000) {
    if (child.exitCode !== null || Date.now() > end) throw new Error(`child ended or was too slow before a checkpoint past line 2000 (exit ${child.exitCode}): ${stderr}`);
    await new Promise((r) => setTimeout(r, 10));
    cpLine = (await readCheckpoint(cpPath).catch(() => undefined))?.line ?? 0;
  }
  child.kill('SIGKILL');
  const [, signal] = await exited;
  expect(signal).toBe('SIGKILL');
  const cp = (await readCheckpoint(cpPath))!;
  expect(cp.line).toBeGreaterThanOrEqual(2000);
  expect(cp.line).toBeLessThan(n);
  // The killed run may have written past its last checkpoint; the checkpoint never claims more than is there.
  expect(statSync(out).size).toBeGreaterThanOrEqual(cp.outputBytes);

  const r = await runBatch({ input: inPath, output: out, concurrency: 32, call: async (x) => (x as number) * 2 });
  expect(r).toMatchObject({ interrupted: false, resumedAfterLine: cp.line, ok: n, failed: 0 });
  const rows = readFileSync(out, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { line: number; output: number });
  expect(rows.length).toBe(n);
  for (let i = 0; i < n; i++) expect(rows[i]).toEqual({ line: i + 1, output: i * 2 });
});
