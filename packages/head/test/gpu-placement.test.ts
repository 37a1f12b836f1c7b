import { InsufficientResourcesError, InvalidOptionError } from '@shoal/core';
import { describe, expect, it } from 'vitest';
import { placeGpuReplicas, type GpuDeviceState } from '../src/gpu-placement.ts';

const GiB = 1024 ** 3;

function gpu(workerId: string, index: number, freeGiB: number, totalGiB = 80, usedShare = 0, resident?: string[]): GpuDeviceState {
  return { workerId, index, totalBytes: totalGiB * GiB, freeBytes: freeGiB * GiB, usedShare, ...(resident ? { residentBlobs: new Set(resident) } : {}) };
}

const noHeadroom = { headroomFraction: 0, headroomBytes: 0 };

describe('placeGpuReplicas', () => {
  it('places by free memory and spreads across devices', () => {
    const r = placeGpuReplicas('rec', 3, { gpus: 0.25, bytesPerDevice: 10 * GiB }, [gpu('a', 0, 30), gpu('a', 1, 70), gpu('b', 0, 55)], noHeadroom);
    expect(r.placements.map((p) => `${p.workerId}/${p.devices[0]}`)).toEqual(['a/1', 'a/1', 'b/0']);
    expect(r.devices.find((d) => d.workerId === 'a' && d.index === 1)!.freeBytes).toBe(50 * GiB);
  });

  it('counts a shared base once per device', () => {
    const need = { gpus: 0.1, bytesPerDevice: 1 * GiB, sharedBlobs: [{ name: 'llm/base', bytes: 20 * GiB }] };
    // One 40 GiB device: full copies would need 8 x 21 GiB; a shared base needs 20 + 8 x 1.
    const r = placeGpuReplicas('lora', 8, need, [gpu('a', 0, 40)], noHeadroom);
    expect(r.placements[0]!.chargedBytes).toEqual([21 * GiB]);
    expect(r.placements[0]!.loadsShared).toEqual(['llm/base']);
    expect(r.placements.slice(1).every((p) => p.chargedBytes[0] === GiB && p.loadsShared.length === 0)).toBe(true);
    expect(r.devices[0]!.freeBytes).toBe(12 * GiB);
    expect(r.devices[0]!.residentBlobs!.has('llm/base')).toBe(true);
  });

  it('prefers a device that already holds the base, even with less free memory', () => {
    const need = { gpus: 0.1, bytesPerDevice: GiB, sharedBlobs: [{ name: 'base', bytes: 10 * GiB }] };
    const r = placeGpuReplicas('v', 1, need, [gpu('a', 0, 70), gpu('b', 0, 20, 80, 0.5, ['base'])], noHeadroom);
    expect(r.placements[0]).toMatchObject({ workerId: 'b', devices: [0], chargedBytes: [GiB], loadsShared: [] });
  });

  it('keeps the headroom free: the larger of the fraction and the bytes', () => {
    const devices = [gpu('a', 0, 10, 80)];
    // headroom = max(1 GiB, 10% of 80 GiB = 8 GiB) = 8 GiB: 2 GiB available.
    expect(() => placeGpuReplicas('x', 1, { gpus: 0.5, bytesPerDevice: 3 * GiB }, devices, { headroomFraction: 0.1, headroomBytes: GiB }))
      .toThrow(InsufficientResourcesError);
    expect(placeGpuReplicas('x', 1, { gpus: 0.5, bytesPerDevice: 2 * GiB }, devices, { headroomFraction: 0.1, headroomBytes: GiB }).placements).toHaveLength(1);
  });

  it('refuses with the numbers: needed, free, headroom and device', () => {
    let err: unknown;
    try {
      placeGpuReplicas('big', 2, { gpus: 0.5, bytesPerDevice: 30 * GiB, sharedBlobs: [{ name: 'base', bytes: 5 * GiB }] },
        [{ ...gpu('w1', 0, 40), name: 'H100' }], { headroomFraction: 0, headroomBytes: GiB });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InsufficientResourcesError);
    const e = err as InsufficientResourcesError;
    expect(e.code).toBe('ERR_INSUFFICIENT_RESOURCES');
    expect(e.message).toContain('deployment "big" cannot place replica 2 of 2 (1 of 2 would fit)');
    expect(e.message).toContain('w1/gpu0 (H100)');
    expect(e.message).toContain(`needed 30.00 GiB (${30 * GiB} B) > free 5.00 GiB (${5 * GiB} B) - headroom 1.00 GiB (${GiB} B)`);
    expect(e.details).toMatchObject({ deployment: 'big', replica: 1, devices: [{ workerId: 'w1', index: 0, neededBytes: 30 * GiB, freeBytes: 5 * GiB, headroomBytes: GiB }] });
  });

  it('is all or nothing and does not modify its input', () => {
    const devices = [gpu('a', 0, 20)];
    expect(() => placeGpuReplicas('x', 3, { gpus: 0.1, bytesPerDevice: 8 * GiB }, devices, noHeadroom)).toThrow(/replica 3 of 3/);
    expect(devices[0]!.freeBytes).toBe(20 * GiB);
    expect(devices[0]!.usedShare).toBe(0);
  });

  it('still treats fractional gpus as a logical share', () => {
    // No memory declared: four 0.25 replicas fill a device's share, the fifth goes elsewhere, the ninth is refused.
    const devices = [gpu('a', 0, 80), gpu('a', 1, 80)];
    const r = placeGpuReplicas('s', 8, { gpus: 0.25 }, devices, noHeadroom);
    expect(r.devices.map((d) => d.usedShare)).toEqual([1, 1]);
    expect(() => placeGpuReplicas('s', 9, { gpus: 0.25 }, devices, noHeadroom)).toThrow(/gpu share 1 used \+ 0\.25 needed > 1/);
    expect(() => placeGpuReplicas('s', 1, { gpus: 0.5 }, [gpu('a', 0, 80, 80, 0.75)], noHeadroom)).toThrow(InsufficientResourcesError);
  });

  it('places whole multi-gpu replicas on k free devices of one worker', () => {
    const devices = [gpu('a', 0, 80), gpu('a', 1, 80, 80, 0.5), gpu('b', 0, 60), gpu('b', 1, 70)];
    const r = placeGpuReplicas('tp', 1, { gpus: 2, bytesPerDevice: 40 * GiB }, devices, noHeadroom);
    expect(r.placements[0]).toMatchObject({ workerId: 'b', devices: [1, 0], chargedBytes: [40 * GiB, 40 * GiB] });
    expect(() => placeGpuReplicas('tp', 2, { gpus: 2, bytesPerDevice: 40 * GiB }, devices, noHeadroom)).toThrow(/replica 2 of 2/);
  });

  it('names the option in argument errors and explains an empty cluster', () => {
    expect(() => placeGpuReplicas('x', 1, { gpus: 1.5 }, [])).toThrow(InvalidOptionError);
    expect(() => placeGpuReplicas('x', 1, { gpus: 0 }, [])).toThrow(/resources\.gpus/);
    expect(() => placeGpuReplicas('x', 1, { gpus: 1, bytesPerDevice: -1 }, [])).toThrow(/bytesPerDevice/);
    expect(() => placeGpuReplicas('x', 1, { gpus: 1 }, [], { headroomFraction: 1 })).toThrow(/placement\.headroomFraction/);
    expect(() => placeGpuReplicas('x', 1, { gpus: 1 }, [])).toThrow(/no worker reports a GPU/);
    expect(placeGpuReplicas('x', 0, { gpus: 1 }, []).placements).toEqual([]);
  });
});
