/** A float64 reference of the example family (base + LoRA adapters + head), and deterministic inputs. */
import type { ExampleFamily, F32Tensor } from '../src/index.ts';

const gelu = (v: number): number => 0.5 * v * (1 + Math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));

/** Float64 reference of one row through base + the variant's LoRA adapters + head. */
export function reference(fam: ExampleFamily, x: Float32Array, v: number): number[] {
  const t = (set: Record<string, F32Tensor>, n: string): F32Tensor => set[n]!;
  const variant = fam.variants[v]!;
  const scale = fam.manifest.variants[v]!.lora?.[0]?.scale ?? 0;
  let cur = Array.from(x);
  fam.manifest.base.layers.forEach((layer, l) => {
    const W = t(fam.base, layer.weight);
    const [inDim, outDim] = W.shape as [number, number];
    const b = t(fam.base, layer.bias!).data;
    const A = variant[`l${l}.lora_a`];
    const B = variant[`l${l}.lora_b`];
    const r = A?.shape[1] ?? 0;
    const xa = new Array<number>(r).fill(0);
    for (let q = 0; q < r; q++) for (let p = 0; p < inDim; p++) xa[q]! += cur[p]! * A!.data[p * r + q]!;
    const next: number[] = [];
    for (let j = 0; j < outDim; j++) {
      let acc = b[j]!;
      for (let p = 0; p < inDim; p++) acc += cur[p]! * W.data[p * outDim + j]!;
      for (let q = 0; q < r; q++) acc += scale * xa[q]! * B!.data[q * outDim + j]!;
      next.push(layer.activation === 'relu' ? Math.max(acc, 0) : layer.activation === 'gelu' ? gelu(acc) : acc);
    }
    cur = next;
  });
  const H = variant['head.w']!;
  const hb = variant['head.b']!.data;
  const [inDim, outDim] = H.shape as [number, number];
  return Array.from({ length: outDim }, (_, j) => {
    let acc = hb[j]!;
    for (let p = 0; p < inDim; p++) acc += cur[p]! * H.data[p * outDim + j]!;
    return acc;
  });
}

export function input(rows: number, dim: number, seed: number): Float32Array {
  const x = new Float32Array(rows * dim);
  let s = seed;
  for (let i = 0; i < x.length; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    x[i] = (s / 2147483648) * 2 - 1;
  }
  return x;
}
