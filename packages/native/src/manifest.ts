/**
 * The family manifest: a shared base (a stack of linear layers) plus variants that add LoRA adapters on base
 * layers and/or an output head, each in its own safetensors file. JSON on disk, compiled once into the
 * normalised spec the addon takes.
 *
 *   { "name": "tower",
 *     "base": { "path": "base.safetensors", "layers": [ { "weight": "l0.w", "bias": "l0.b", "activation": "relu" } ] },
 *     "variants": [ { "id": "fr", "path": "fr.safetensors", "lora": [ { "layer": 0, "a": "l0.a", "b": "l0.b", "scale": 0.5 } ],
 *                     "head": { "weight": "head.w", "bias": "head.b" } } ] }
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import { InvalidOptionError } from '@shoal/core';
import type { ActivationName, NativeFamilySpec, NativeLayerSpec } from './addon-types.ts';

export interface LayerManifest {
  /** Tensor [in x out] (float32). */
  weight: string;
  /** Tensor [out]; none when absent. @default none */
  bias?: string;
  /** @default 'none' */
  activation?: ActivationName;
}

export interface LoraManifest {
  /** Index of the base layer the adapter adds to. */
  layer: number;
  /** Tensor [in x r]. */
  a: string;
  /** Tensor [r x out]. */
  b: string;
  /** y = xW + scale * (xA)B. @default 1 */
  scale?: number;
}

export interface VariantManifest {
  id: string;
  /** Blob name; variants that name the same blob share it. @default `${family}/${id}` */
  blob?: string;
  /** safetensors file, relative to the manifest. Absent: the blob must already be loaded. */
  path?: string;
  /** @default [] */
  lora?: LoraManifest[];
  /** Per-variant output layer after the base. @default none (the base output) */
  head?: LayerManifest;
}

export interface FamilyManifest {
  name: string;
  base: {
    /** Blob name; families naming the same base blob share one copy per device. @default `${name}/base` */
    blob?: string;
    /** safetensors file, relative to the manifest. Absent: the blob must already be loaded. */
    path?: string;
    layers: LayerManifest[];
  };
  variants: VariantManifest[];
}

const ACTIVATIONS: readonly ActivationName[] = ['none', 'relu', 'gelu'];

function str(path: string, v: unknown, optional: boolean): string {
  if (v === undefined && optional) return '';
  if (typeof v !== 'string' || v === '') throw new InvalidOptionError(path, 'must be a non-empty string', v);
  return v;
}

function obj(path: string, v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new InvalidOptionError(path, 'must be an object', v);
  return v as Record<string, unknown>;
}

function list(path: string, v: unknown, optional: boolean): unknown[] {
  if (v === undefined && optional) return [];
  if (!Array.isArray(v)) throw new InvalidOptionError(path, 'must be an array', v);
  return v;
}

function filePath(path: string, v: unknown, baseDir: string | undefined): string {
  const p = str(path, v, true);
  if (p === '' || isAbsolute(p)) return p;
  if (baseDir === undefined) throw new InvalidOptionError(path, 'is relative but the manifest has no directory to resolve it against', p);
  return resolve(baseDir, p);
}

function layer(path: string, v: unknown): NativeLayerSpec {
  const o = obj(path, v);
  const activation = (o.activation ?? 'none') as ActivationName;
  if (!ACTIVATIONS.includes(activation)) throw new InvalidOptionError(`${path}.activation`, `must be one of ${ACTIVATIONS.join(', ')}`, o.activation);
  return { weight: str(`${path}.weight`, o.weight, false), bias: str(`${path}.bias`, o.bias, true), activation };
}

/** Validates a manifest and resolves relative paths against `baseDir`; errors name the full option path. */
export function compileFamilyManifest(manifest: FamilyManifest, baseDir?: string, path = 'family'): NativeFamilySpec {
  const m = obj(path, manifest);
  const name = str(`${path}.name`, m.name, false);
  const base = obj(`${path}.base`, m.base);
  const layers = list(`${path}.base.layers`, base.layers, false).map((l, i) => layer(`${path}.base.layers[${i}]`, l));
  if (layers.length === 0) throw new InvalidOptionError(`${path}.base.layers`, 'must name at least one layer', layers);
  const variants = list(`${path}.variants`, m.variants, false);
  if (variants.length === 0) throw new InvalidOptionError(`${path}.variants`, 'must name at least one variant', variants);
  const seen = new Set<string>();
  return {
    name,
    baseBlob: base.blob === undefined ? `${name}/base` : str(`${path}.base.blob`, base.blob, false),
    basePath: filePath(`${path}.base.path`, base.path, baseDir),
    layers,
    variants: variants.map((raw, i) => {
      const vp = `${path}.variants[${i}]`;
      const v = obj(vp, raw);
      const id = str(`${vp}.id`, v.id, false);
      if (seen.has(id)) throw new InvalidOptionError(`${vp}.id`, 'is used by an earlier variant', id);
      seen.add(id);
      const loras = list(`${vp}.lora`, v.lora, true).map((rawLora, j) => {
        const lp = `${vp}.lora[${j}]`;
        const l = obj(lp, rawLora);
        if (!Number.isInteger(l.layer) || (l.layer as number) < 0 || (l.layer as number) >= layers.length) {
          throw new InvalidOptionError(`${lp}.layer`, `must be a base layer index in [0, ${layers.length})`, l.layer);
        }
        const scale = l.scale ?? 1;
        if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new InvalidOptionError(`${lp}.scale`, 'must be a finite number', scale);
        return { layer: l.layer as number, a: str(`${lp}.a`, l.a, false), b: str(`${lp}.b`, l.b, false), scale };
      });
      return {
        id,
        blob: v.blob === undefined ? `${name}/${id}` : str(`${vp}.blob`, v.blob, false),
        path: filePath(`${vp}.path`, v.path, baseDir),
        loras,
        head: v.head === undefined ? null : layer(`${vp}.head`, v.head),
      };
    }),
  };
}

/** Reads a manifest JSON file; relative weight paths resolve against its directory. */
export async function readFamilyManifest(file: string): Promise<NativeFamilySpec> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw unreadable(file, err);
  }
  return parseManifest(file, text);
}

/** readFamilyManifest, synchronously: for declaring resources when an application module loads. */
export function readFamilyManifestSync(file: string): NativeFamilySpec {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw unreadable(file, err);
  }
  return parseManifest(file, text);
}

function unreadable(file: string, err: unknown): InvalidOptionError {
  return new InvalidOptionError(`family manifest ${file}`, `cannot be read as JSON: ${err instanceof Error ? err.message : String(err)}`);
}

function parseManifest(file: string, text: string): NativeFamilySpec {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw unreadable(file, err);
  }
  return compileFamilyManifest(parsed as FamilyManifest, dirname(resolve(file)), `family manifest ${file}`);
}

/** The spec with only the named variants, in the order given; an unknown or repeated id names the known ones. */
export function selectVariants(spec: NativeFamilySpec, ids: readonly string[], path = 'variants'): NativeFamilySpec {
  if (!Array.isArray(ids) || ids.length === 0) throw new InvalidOptionError(path, 'must be a non-empty array of variant ids', ids);
  const byId = new Map(spec.variants.map((v) => [v.id, v]));
  const seen = new Set<string>();
  const variants = ids.map((id, i) => {
    const v = byId.get(id);
    if (v === undefined) throw new InvalidOptionError(`${path}[${i}]`, `names no variant of family "${spec.name}" (known: ${[...byId.keys()].join(', ')})`, id);
    if (seen.has(id)) throw new InvalidOptionError(`${path}[${i}]`, 'is listed twice', id);
    seen.add(id);
    return v;
  });
  return { ...spec, variants };
}
