/**
 * GPU placement: which device of which worker each replica of a deployment goes to. A pure policy over
 * device reports (free memory, logical share in use, shared blobs already resident):
 *   - a replica fits a device when its logical share fits (fractional gpus, as before) AND its device
 *     memory fits under the free memory minus a headroom;
 *   - a shared blob (the base of a model family) is charged once per device: the first replica on a
 *     device pays for it, later ones only for their own bytes;
 *   - among devices that fit, it prefers one that already holds the replica's shared blobs, then the one
 *     with the most memory left, then the one with the least gpu share in use (both spread load), then worker
 *     id and device index (deterministic).
 * A deployment is placed whole or not at all: when a replica cannot fit anywhere, InsufficientResourcesError
 * says, for every device, what was needed against what was free and the headroom kept.
 */
import { InsufficientResourcesError, InvalidOptionError } from '@shoal/core';

export interface GpuDeviceState {
  workerId: string;
  /** Device index on its worker. */
  index: number;
  /** For messages, e.g. "NVIDIA H100 80GB HBM3". */
  name?: string;
  /** For messages: "host" labels the native host backend's pseudo device. @default 'cuda' */
  kind?: 'cuda' | 'host';
  totalBytes: number;
  /** Free device memory as reported by the worker (already excludes resident blobs). */
  freeBytes: number;
  /** Logical GPU share already reserved by replicas placed here, in [0, 1]. */
  usedShare: number;
  /** Shared blobs already resident on the device, by name: a replica that uses them does not pay again. */
  residentBlobs?: ReadonlySet<string>;
}

export interface SharedBlobNeed {
  name: string;
  bytes: number;
}

export interface ReplicaGpuNeed {
  /**
   * Logical GPUs one replica takes: a fraction shares one device; a whole number k takes k devices of one worker;
   * 0 takes no share, only memory on one device (bytesPerDevice or sharedBlobs must then be given).
   */
  gpus: number;
  /** Device bytes the replica needs for itself on each of its devices (pool budget, private weights). @default 0 */
  bytesPerDevice?: number;
  /** Blobs shared with other replicas (a family's base): charged once per device. @default [] */
  sharedBlobs?: readonly SharedBlobNeed[];
}

export interface GpuPlacementOptions {
  /** Memory kept free on every device, as a fraction of its total. @default 0.05 */
  headroomFraction?: number;
  /** Memory kept free on every device, in bytes; the larger of the two headrooms applies. @default 268435456 (256 MiB) */
  headroomBytes?: number;
}

export interface GpuPlacement {
  /** Replica ordinal within this request, 0-based. */
  replica: number;
  workerId: string;
  /** Device indices on the worker: one for a fractional or single-GPU replica, k for gpus = k. */
  devices: number[];
  /** Device bytes charged per device for this replica (its own bytes plus shared blobs it was first to load). */
  chargedBytes: number[];
  /** Names of shared blobs this replica loads (the rest were already resident). */
  loadsShared: string[];
}

export interface GpuPlacementResult {
  placements: GpuPlacement[];
  /** The device states after placement, for the next decision. */
  devices: GpuDeviceState[];
}

const EPS = 1e-9;
const DEFAULT_HEADROOM_FRACTION = 0.05;
const DEFAULT_HEADROOM_BYTES = 256 * 1024 * 1024;

interface Compiled {
  gpus: number;
  bytesPerDevice: number;
  shared: SharedBlobNeed[];
  headroomFraction: number;
  headroomBytes: number;
}

function compile(deployment: string, replicas: number, need: ReplicaGpuNeed, opts: GpuPlacementOptions): Compiled {
  const path = `deployment "${deployment}"`;
  if (!Number.isInteger(replicas) || replicas < 0) throw new InvalidOptionError(`${path}.numReplicas`, 'must be a non-negative integer', replicas);
  const gpus = need.gpus;
  if (typeof gpus !== 'number' || !Number.isFinite(gpus) || gpus < 0) throw new InvalidOptionError(`${path}.resources.gpus`, 'must be >= 0 for GPU placement', gpus);
  if (gpus > 1 && !Number.isInteger(gpus)) throw new InvalidOptionError(`${path}.resources.gpus`, 'above 1 must be a whole number', gpus);
  const bytesPerDevice = need.bytesPerDevice ?? 0;
  if (!Number.isSafeInteger(bytesPerDevice) || bytesPerDevice < 0) throw new InvalidOptionError(`${path}.bytesPerDevice`, 'must be a non-negative integer', bytesPerDevice);
  const shared = [...(need.sharedBlobs ?? [])];
  if (gpus === 0 && bytesPerDevice === 0 && shared.length === 0) {
    throw new InvalidOptionError(`${path}.resources.gpus`, 'must be > 0 for GPU placement when no device memory is declared', gpus);
  }
  shared.forEach((b, i) => {
    if (typeof b.name !== 'string' || b.name === '') throw new InvalidOptionError(`${path}.sharedBlobs[${i}].name`, 'must be a non-empty string', b.name);
    if (!Number.isSafeInteger(b.bytes) || b.bytes < 0) throw new InvalidOptionError(`${path}.sharedBlobs[${i}].bytes`, 'must be a non-negative integer', b.bytes);
  });
  const headroomFraction = opts.headroomFraction ?? DEFAULT_HEADROOM_FRACTION;
  if (!(headroomFraction >= 0 && headroomFraction < 1)) throw new InvalidOptionError('placement.headroomFraction', 'must be in [0, 1)', headroomFraction);
  const headroomBytes = opts.headroomBytes ?? DEFAULT_HEADROOM_BYTES;
  if (!Number.isSafeInteger(headroomBytes) || headroomBytes < 0) throw new InvalidOptionError('placement.headroomBytes', 'must be a non-negative integer', headroomBytes);
  return { gpus, bytesPerDevice, shared, headroomFraction, headroomBytes };
}

function headroomOf(d: GpuDeviceState, c: Compiled): number {
  return Math.max(c.headroomBytes, Math.ceil(d.totalBytes * c.headroomFraction));
}

/** Bytes a replica would add to this device: its own plus shared blobs not resident yet. */
function neededOn(d: GpuDeviceState, c: Compiled): { bytes: number; loads: string[] } {
  const loads = c.shared.filter((b) => !(d.residentBlobs?.has(b.name) ?? false));
  return { bytes: c.bytesPerDevice + loads.reduce((s, b) => s + b.bytes, 0), loads: loads.map((b) => b.name) };
}

function availableOn(d: GpuDeviceState, c: Compiled): number {
  return d.freeBytes - headroomOf(d, c);
}

/** Why a device cannot take the replica, or undefined when it can. */
function refusal(d: GpuDeviceState, c: Compiled, share: number): string | undefined {
  if (d.usedShare + share > 1 + EPS) return `gpu share ${fmtShare(d.usedShare)} used + ${fmtShare(share)} needed > 1`;
  const { bytes } = neededOn(d, c);
  const avail = availableOn(d, c);
  if (bytes > avail) {
    return `needed ${fmtBytes(bytes)} > free ${fmtBytes(d.freeBytes)} - headroom ${fmtBytes(headroomOf(d, c))} = ${fmtBytes(Math.max(avail, 0))}`;
  }
  return undefined;
}

function charge(d: GpuDeviceState, c: Compiled, share: number): { charged: number; loads: string[] } {
  const { bytes, loads } = neededOn(d, c);
  d.freeBytes -= bytes;
  d.usedShare += share;
  if (loads.length > 0) d.residentBlobs = new Set([...(d.residentBlobs ?? []), ...loads]);
  return { charged: bytes, loads };
}

function label(d: GpuDeviceState): string {
  return `${d.workerId}/${d.kind === 'host' ? 'host' : 'gpu'}${d.index}${d.name === undefined ? '' : ` (${d.name})`}`;
}

/** Higher is better: holds the shared blobs already, then most memory left after the replica, then least share used. */
function score(d: GpuDeviceState, c: Compiled): [number, number, number] {
  const { bytes } = neededOn(d, c);
  const reuses = c.shared.length > 0 && c.shared.every((b) => d.residentBlobs?.has(b.name) ?? false) ? 1 : 0;
  return [reuses, availableOn(d, c) - bytes, -d.usedShare];
}

function better(a: GpuDeviceState, b: GpuDeviceState, c: Compiled): boolean {
  const [ra, fa, sa] = score(a, c);
  const [rb, fb, sb] = score(b, c);
  if (ra !== rb) return ra > rb;
  if (fa !== fb) return fa > fb;
  if (Math.abs(sa - sb) > EPS) return sa > sb;
  if (a.workerId !== b.workerId) return a.workerId < b.workerId;
  return a.index < b.index;
}

/**
 * Places `replicas` replicas of `deployment` onto the devices. Pure: the input states are not modified;
 * the result carries the updated states. Throws InsufficientResourcesError when any replica does not fit.
 */
export function placeGpuReplicas(
  deployment: string,
  replicas: number,
  need: ReplicaGpuNeed,
  devices: readonly GpuDeviceState[],
  options: GpuPlacementOptions = {},
): GpuPlacementResult {
  const c = compile(deployment, replicas, need, options);
  const state = devices.map((d) => ({ ...d, residentBlobs: d.residentBlobs === undefined ? undefined : new Set(d.residentBlobs) }));
  const placements: GpuPlacement[] = [];
  for (let r = 0; r < replicas; r++) {
    const placed = c.gpus <= 1 ? placeFractional(state, c) : placeWhole(state, c);
    if (placed === undefined) throw refuse(deployment, r, replicas, state, c);
    placements.push({ replica: r, ...placed });
  }
  return { placements, devices: state };
}

function placeFractional(state: GpuDeviceState[], c: Compiled): Omit<GpuPlacement, 'replica'> | undefined {
  let best: GpuDeviceState | undefined;
  for (const d of state) if (refusal(d, c, c.gpus) === undefined && (best === undefined || better(d, best, c))) best = d;
  if (best === undefined) return undefined;
  const { charged, loads } = charge(best, c, c.gpus);
  return { workerId: best.workerId, devices: [best.index], chargedBytes: [charged], loadsShared: loads };
}

/** gpus = k: k whole, unshared devices of one worker; the worker with the best k-th device wins. */
function placeWhole(state: GpuDeviceState[], c: Compiled): Omit<GpuPlacement, 'replica'> | undefined {
  const k = c.gpus;
  let chosen: GpuDeviceState[] | undefined;
  const workers = [...new Set(state.map((d) => d.workerId))].sort();
  for (const w of workers) {
    const fit = state.filter((d) => d.workerId === w && refusal(d, c, 1) === undefined);
    if (fit.length < k) continue;
    fit.sort((a, b) => (better(a, b, c) ? -1 : 1));
    const pick = fit.slice(0, k);
    if (chosen === undefined || better(pick[k - 1]!, chosen[k - 1]!, c)) chosen = pick;
  }
  if (chosen === undefined) return undefined;
  const loads = new Set<string>();
  const chargedBytes = chosen.map((d) => {
    const r = charge(d, c, 1);
    r.loads.forEach((l) => loads.add(l));
    return r.charged;
  });
  return { workerId: chosen[0]!.workerId, devices: chosen.map((d) => d.index), chargedBytes, loadsShared: [...loads] };
}

function refuse(deployment: string, replica: number, replicas: number, state: readonly GpuDeviceState[], c: Compiled): InsufficientResourcesError {
  const sharedBytes = c.shared.reduce((s, b) => s + b.bytes, 0);
  const what = (c.gpus === 0 ? `${fmtBytes(c.bytesPerDevice)} of device memory` : `${fmtShare(c.gpus)} gpu${c.gpus > 1 ? 's' : ''} with ${fmtBytes(c.bytesPerDevice)} per device`)
    + (c.shared.length > 0 ? ` + shared ${c.shared.map((b) => `"${b.name}"`).join(', ')} ${fmtBytes(sharedBytes)} once per device` : '');
  const perDevice = state.map((d) => `${label(d)}: ${refusal(d, c, Math.min(c.gpus, 1)) ?? 'fits alone, but not enough such devices on one worker'}`);
  const placedNote = replica > 0 ? ` (${replica} of ${replicas} would fit)` : '';
  const message = state.length === 0
    ? `deployment "${deployment}" needs ${what} but no worker reports a GPU`
    : `deployment "${deployment}" cannot place replica ${replica + 1} of ${replicas}${placedNote}: needs ${what}; ${perDevice.join('; ')}`;
  return new InsufficientResourcesError(message, {
    deployment,
    replica,
    replicas,
    gpus: c.gpus,
    bytesPerDevice: c.bytesPerDevice,
    sharedBytes,
    devices: state.map((d) => {
      const needed = neededOn(d, c).bytes;
      return { workerId: d.workerId, index: d.index, neededBytes: needed, freeBytes: d.freeBytes, headroomBytes: headroomOf(d, c), usedShare: d.usedShare };
    }),
  });
}

function fmtShare(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

/** "1.50 GiB (1610612736 B)": readable, with the exact count for whoever compares numbers. */
function fmtBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(2)} ${units[u]} (${n} B)`;
}
