/**
 * The head's view of device memory: what each worker reported at hello, minus what the replicas the head
 * placed there were charged. A shared blob (a family's base) is charged once per device however many
 * replicas use it. Pure: the controller passes its records in; the placement policy takes the result.
 */
import type { CompiledDeploymentResources, DeviceKind } from '@shoal/core';
import type { DeviceInfo } from '@shoal/protocol';
import type { GpuDeviceState, ReplicaGpuNeed } from './gpu-placement.ts';

/** A replica holding device memory: the worker and device indices it was placed on, and what it declared. */
export interface DeviceCharge {
  workerId: string;
  devices: readonly number[];
  resources: CompiledDeploymentResources;
}

/** Deployments that declare gpus or device memory are placed per device, not only counted per worker. */
export function usesDevicePlacement(res: CompiledDeploymentResources): boolean {
  return res.gpus > 0 || res.gpuMemory > 0 || res.sharedBlobs.length > 0;
}

export function gpuNeedOf(res: CompiledDeploymentResources): ReplicaGpuNeed {
  return { gpus: res.gpus, bytesPerDevice: res.gpuMemory, sharedBlobs: res.sharedBlobs };
}

/** Device states of `kind` on the given workers, with every charge subtracted. */
export function deviceStates(
  workers: ReadonlyArray<{ workerId: string; devices: readonly DeviceInfo[] }>,
  kind: DeviceKind,
  charges: readonly DeviceCharge[],
): GpuDeviceState[] {
  const out: GpuDeviceState[] = [];
  const byKey = new Map<string, { state: GpuDeviceState; blobs: Map<string, number> }>();
  for (const w of workers) {
    for (const d of w.devices) {
      if (d.kind !== kind) continue;
      const state: GpuDeviceState = { workerId: w.workerId, index: d.index, name: d.name, kind: d.kind, totalBytes: d.totalBytes, freeBytes: d.freeBytes, usedShare: 0 };
      out.push(state);
      byKey.set(`${w.workerId}/${d.index}`, { state, blobs: new Map() });
    }
  }
  for (const c of charges) {
    if (c.resources.device !== kind) continue;
    for (const index of c.devices) {
      const entry = byKey.get(`${c.workerId}/${index}`);
      if (entry === undefined) continue;
      entry.state.freeBytes -= c.resources.gpuMemory;
      entry.state.usedShare += Math.min(c.resources.gpus, 1);
      for (const b of c.resources.sharedBlobs) entry.blobs.set(b.name, Math.max(entry.blobs.get(b.name) ?? 0, b.bytes));
    }
  }
  for (const { state, blobs } of byKey.values()) {
    for (const bytes of blobs.values()) state.freeBytes -= bytes;
    if (blobs.size > 0) state.residentBlobs = new Set(blobs.keys());
  }
  return out;
}
