import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { OrtPool, buildMlpModel, measureEventLoopDelay, startEventLoopDelayMonitor } from '../src/index.ts';

let dir: string;
let mlpPath: string;
const HIDDEN = 512;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'shoal-eld-'));
  mlpPath = join(dir, 'mlp.onnx');
  writeFileSync(mlpPath, Buffer.concat(buildMlpModel({ hidden: HIDDEN, layers: 4 })));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('event-loop delay', () => {
  test('the monitor sees a blocked loop (so a low figure below means something)', async () => {
    const { delay } = await measureEventLoopDelay(async () => {
      await new Promise((r) => setTimeout(r, 30));
      const end = Date.now() + 120;
      while (Date.now() < end) { /* block the loop */ }
      await new Promise((r) => setTimeout(r, 30));
    }, 5);
    expect(delay.maxMs).toBeGreaterThan(80);
  });

  test('an idle loop reads near zero: the sampling period itself is not counted as delay', async () => {
    const { delay } = await measureEventLoopDelay(() => new Promise((r) => setTimeout(r, 200)), 10);
    expect(delay.count).toBeGreaterThan(5);
    expect(delay.p50Ms).toBeLessThan(3);
  });

  test('validates its resolution', () => {
    expect(() => startEventLoopDelayMonitor(0)).toThrow(RangeError);
    const m = startEventLoopDelayMonitor(1);
    expect(m.stop()).toBe(m.stop()); // stop is idempotent
  });

  test('the main thread keeps ticking while the pool runs a heavy model (p99 < 50 ms)', async () => {
    const pool = await OrtPool.load({ model: mlpPath, threads: 2, intraOpThreads: 1 });
    try {
      const { delay, result } = await measureEventLoopDelay(async () => {
        let done = 0;
        const end = Date.now() + 1500;
        // Four requests in flight keeps both ORT threads busy the whole time.
        await Promise.all(Array.from({ length: 4 }, async () => {
          while (Date.now() < end) {
            await pool.run({ x: { type: 'float32', dims: [64, HIDDEN], data: new Float32Array(64 * HIDDEN).fill(0.1) } });
            done++;
          }
        }));
        return done;
      }, 5);
      expect(result).toBeGreaterThan(4);
      expect(delay.count).toBeGreaterThan(100);
      expect(delay.p99Ms).toBeLessThan(50);
    } finally {
      await pool.close();
    }
  });
});
