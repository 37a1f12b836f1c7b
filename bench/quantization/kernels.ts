/**
 * Which kernels onnxruntime multiplies a model's matrices with on this machine, read from its profiler: a
 * float16 graph on a CPU without float16 GEMM kernels runs its MatMuls in float32 (onnxruntime inserts Casts and
 * folds the weights back to float32 at load), which the profile shows and the bench says.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';

/** Operators that multiply matrices, as onnxruntime names them after fusion. */
const MATMUL_OPS = ['MatMul', 'Gemm', 'FusedGemm', 'FusedMatMul', 'MatMulInteger', 'MatMulIntegerToFloat', 'DynamicQuantizeMatMul', 'QLinearMatMul'];

export interface MatmulKernel { op: string; inputType: string; count: number }

/** Runs `rows` rows of float32 input "x" of `width` through the model once with profiling on; lists its matmul kernels. */
export async function matmulKernels(model: string, width: number, rows = 1): Promise<MatmulKernel[]> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-kernels-'));
  try {
    const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, enableProfiling: true, profileFilePrefix: join(dir, 'profile') });
    await session.run({ x: new ort.Tensor('float32', new Float32Array(rows * width), [rows, width]) });
    session.endProfiling();
    await session.release();
    const file = readdirSync(dir).find((f) => f.startsWith('profile'));
    if (file === undefined) throw new Error(`onnxruntime wrote no profile for ${model} into ${dir}`);
    const events = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Array<{ cat: string; name: string; args?: { op_name?: string; input_type_shape?: Array<Record<string, unknown>> } }>;
    const seen = new Map<string, MatmulKernel>();
    // One run: each node appears once with a "_kernel_time" event.
    for (const e of events) {
      const op = e.args?.op_name;
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || op === undefined || !MATMUL_OPS.includes(op)) continue;
      const inputType = Object.keys(e.args?.input_type_shape?.[0] ?? {})[0] ?? '?';
      const key = `${op} ${inputType}`;
      const k = seen.get(key) ?? { op, inputType, count: 0 };
      k.count++;
      seen.set(key, k);
    }
    return [...seen.values()];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const describeKernels = (ks: MatmulKernel[]): string => ks.map((k) => `${k.count}x ${k.op}(${k.inputType})`).join(', ') || 'none';
