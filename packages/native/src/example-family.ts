/**
 * Writes a random MLP-tower family to a directory: a shared base of linear layers plus N variants, each
 * with rank-r LoRA adapters on every base layer and its own output head. For demos, tests and bench/vram.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ActivationName } from './addon-types.ts';
import type { FamilyManifest } from './manifest.ts';
import { encodeSafetensors, type F32Tensor } from './safetensors.ts';

export interface ExampleFamilyOptions {
  dir: string;
  /** @default 'tower' */
  name?: string;
  /** Widths from input to base output, e.g. [64, 256, 256]. @default [32, 64, 48] */
  dims?: readonly number[];
  /** @default 4 */
  variants?: number;
  /** LoRA rank; 0 for heads only. @default 4 */
  rank?: number;
  /** Head output width; 0 for adapters only (output = base output). @default 8 */
  headDim?: number;
  /** @default 1 */
  seed?: number;
}

export interface ExampleFamily {
  manifest: FamilyManifest;
  manifestPath: string;
  /** The raw tensors, for reference implementations in tests. */
  base: Record<string, F32Tensor>;
  variants: Array<Record<string, F32Tensor>>;
  /** Bytes of the base file and of each variant file. */
  baseBytes: number;
  variantBytes: number[];
}

function rng(seed: number): (scale: number) => number {
  let s = (seed * 2654435761) >>> 0 || 1;
  return (scale) => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return ((s / 4294967296) * 2 - 1) * scale;
  };
}

export async function writeExampleFamily(opts: ExampleFamilyOptions): Promise<ExampleFamily> {
  const name = opts.name ?? 'tower';
  const dims = opts.dims ?? [32, 64, 48];
  const nv = opts.variants ?? 4;
  const rank = opts.rank ?? 4;
  const headDim = opts.headDim ?? 8;
  const next = rng(opts.seed ?? 1);
  const tensor = (shape: number[], scale: number): F32Tensor => {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = next(scale);
    return { shape, data };
  };
  await mkdir(opts.dir, { recursive: true });
  const base: Record<string, F32Tensor> = {};
  const layers: FamilyManifest['base']['layers'] = [];
  for (let l = 0; l + 1 < dims.length; l++) {
    const fanIn = dims[l]!;
    base[`l${l}.w`] = tensor([fanIn, dims[l + 1]!], 1 / Math.sqrt(fanIn));
    base[`l${l}.b`] = tensor([dims[l + 1]!], 0.1);
    const activation: ActivationName = l % 2 === 0 ? 'relu' : 'gelu';
    layers.push({ weight: `l${l}.w`, bias: `l${l}.b`, activation });
  }
  const baseBytesArr = encodeSafetensors(base);
  await writeFile(join(opts.dir, `${name}-base.safetensors`), baseBytesArr);
  const variants: Array<Record<string, F32Tensor>> = [];
  const variantBytes: number[] = [];
  const manifest: FamilyManifest = { name, base: { path: `${name}-base.safetensors`, layers }, variants: [] };
  for (let v = 0; v < nv; v++) {
    const t: Record<string, F32Tensor> = {};
    const lora: NonNullable<FamilyManifest['variants'][number]['lora']> = [];
    if (rank > 0) {
      for (let l = 0; l + 1 < dims.length; l++) {
        t[`l${l}.lora_a`] = tensor([dims[l]!, rank], 1 / Math.sqrt(dims[l]!));
        t[`l${l}.lora_b`] = tensor([rank, dims[l + 1]!], 1 / Math.sqrt(rank));
        lora.push({ layer: l, a: `l${l}.lora_a`, b: `l${l}.lora_b`, scale: 0.5 });
      }
    }
    const last = dims[dims.length - 1]!;
    if (headDim > 0) {
      t['head.w'] = tensor([last, headDim], 1 / Math.sqrt(last));
      t['head.b'] = tensor([headDim], 0.1);
    }
    const bytes = encodeSafetensors(t);
    const file = `${name}-v${v}.safetensors`;
    await writeFile(join(opts.dir, file), bytes);
    variants.push(t);
    variantBytes.push(bytes.length);
    manifest.variants.push({ id: `v${v}`, path: file, lora, ...(headDim > 0 ? { head: { weight: 'head.w', bias: 'head.b' } } : {}) });
  }
  const manifestPath = join(opts.dir, `${name}.family.json`);
  await writeFile(manifestPath, JSON.stringify(manifest, null, 2));
  return { manifest, manifestPath, base, variants, baseBytes: baseBytesArr.length, variantBytes };
}
