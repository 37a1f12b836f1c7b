/** The controller placing replicas by device memory: free memory with headroom, shared bases once, refusals with numbers. */
import { describe, expect, it } from 'vitest';
import { InsufficientResourcesError } from '@shoal/core';
import { appSpec, cudaDevice, GiB, placement, rig } from './fake-cluster.ts';

const noHeadroom = { placement: { headroomFraction: 0, headroomBytes: 0 } };
const MiB = 1024 ** 2;

function devicesOf(ctl: ReturnType<typeof rig>['ctl'], deployment: string): string[] {
  return ctl.status().replicas.filter((r) => r.deployment === deployment).map((r) => `${r.workerId}/${r.devices?.join('+')}`).sort();
}

describe('Controller placement by device memory', () => {
  it('places replicas on the device with the most free memory, never past it', async () => {
    const { ctl, ops, addWorker } = rig(noHeadroom);
    const cpuOnly = addWorker(8);
    const small = addWorker(8, { devices: [cudaDevice(0, 40 * GiB, 80 * GiB)] });
    const big = addWorker(8, { devices: [cudaDevice(0, 10 * GiB, 80 * GiB), cudaDevice(1, 70 * GiB, 80 * GiB)] });
    ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 3, resources: { cpus: 1, gpuMemory: 30 * GiB } }]));
    await ctl.reconcile();
    // 70 -> 40 on big/1; then 40 free on both: the tie goes to the lower worker id; then big/1 again (40 free).
    expect(devicesOf(ctl, 'M')).toEqual([`${small}/0`, `${big}/1`, `${big}/1`]);
    expect(placement(ctl, 'M')[cpuOnly]).toBeUndefined();
    // Each worker is told which of its devices the replica got.
    expect(ops.starts.map((s) => `${s.workerId}/${s.devices?.join('+')}`).sort()).toEqual(devicesOf(ctl, 'M'));
    expect(ctl.isReady('a')).toBe(true);
    // A fourth no longer fits anywhere (10 GiB left on each device): nothing more starts.
    ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 4, resources: { cpus: 1, gpuMemory: 30 * GiB } }]));
    await ctl.reconcile();
    expect(ops.starts).toHaveLength(3);
    expect(ctl.deploymentStatus('a', 'M')!.message).toContain('cannot place 1 replica(s) by device memory');
  });

  it('counts a shared base once per device, across deployments that name it', async () => {
    const { ctl, addWorker } = rig(noHeadroom);
    const w = addWorker(32, { devices: [cudaDevice(0, 40 * GiB)] });
    const base = [{ name: 'tower/base', bytes: 20 * GiB }];
    // Eight full copies would need 8 x 21 GiB; one base and eight 1 GiB replicas need 28 GiB.
    ctl.deploy(appSpec('a', [
      { name: 'Fr', numReplicas: 8, resources: { cpus: 1, gpuMemory: GiB, sharedBlobs: base } },
      { name: 'De', numReplicas: 6, resources: { cpus: 1, gpuMemory: 2 * GiB, sharedBlobs: base } },
    ]));
    await ctl.reconcile();
    expect(placement(ctl, 'Fr')).toEqual({ [w]: 8 });
    // 40 - 20 (base, once) - 8 = 12 GiB: six 2 GiB replicas of another deployment on the same base fit exactly.
    expect(placement(ctl, 'De')).toEqual({ [w]: 6 });
    expect(ctl.isReady('a')).toBe(true);
    // One more would need 2 GiB with nothing left, and the message counts the base as already resident.
    ctl.deploy(appSpec('a', [
      { name: 'Fr', numReplicas: 8, resources: { cpus: 1, gpuMemory: GiB, sharedBlobs: base } },
      { name: 'De', numReplicas: 7, resources: { cpus: 1, gpuMemory: 2 * GiB, sharedBlobs: base } },
    ]));
    await ctl.reconcile();
    expect(ctl.deploymentStatus('a', 'De')!.message).toContain(`needed 2.00 GiB (${2 * GiB} B) > free 0 B - headroom 0 B = 0 B`);
  });

  it('refuses a deployment that cannot fit with the numbers: needed, free, headroom and device', () => {
    const { ctl, addWorker } = rig();
    addWorker(4, { devices: [cudaDevice(0, 16 * GiB, 16 * GiB, 'NVIDIA T4')] });
    let err: unknown;
    try {
      ctl.deploy(appSpec('llm', [{ name: 'Big', resources: { gpus: 1, gpuMemory: 20 * GiB } }]));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InsufficientResourcesError);
    // Default headroom: the larger of 256 MiB and 5% of the device (819.2 MiB).
    expect((err as Error).message).toBe(
      'application "llm": deployment "Big" cannot place replica 1 of 1: needs 1 gpu with 20.00 GiB (21474836480 B) per device; '
      + 'w1/gpu0 (NVIDIA T4): needed 20.00 GiB (21474836480 B) > free 16.00 GiB (17179869184 B) - headroom 819.20 MiB (858993460 B) '
      + '= 15.20 GiB (16320875724 B)',
    );
    expect((err as InsufficientResourcesError).details).toMatchObject({ deployment: 'Big', devices: [{ workerId: 'w1', index: 0, neededBytes: 20 * GiB, freeBytes: 16 * GiB, headroomBytes: 858993460 }] });
    expect(ctl.appSpecs()).toHaveLength(0);
  });

  it('starts none of a deployment that fits only in part, says why, and starts all once room appears', async () => {
    const { ctl, ops, addWorker } = rig();
    addWorker(8, { devices: [cudaDevice(0, 16 * GiB)] });
    ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 3, resources: { gpus: 0.25, gpuMemory: 6 * GiB } }]));
    await ctl.reconcile();
    expect(ops.starts).toHaveLength(0);
    const message = ctl.deploymentStatus('a', 'M')!.message;
    expect(message).toContain('cannot place 3 replica(s) by device memory: deployment "M" cannot place replica 3 of 3 (2 of 3 would fit)');
    expect(message).toContain(`w1/gpu0 (Fake GPU): needed 6.00 GiB (${6 * GiB} B) > free 4.00 GiB (${4 * GiB} B) - headroom 819.20 MiB (858993460 B)`);
    const w2 = addWorker(8, { devices: [cudaDevice(0, 16 * GiB)] });
    await ctl.reconcile();
    expect(ops.starts).toHaveLength(3);
    expect(placement(ctl, 'M')[w2]).toBeGreaterThan(0);
    expect(ctl.deploymentStatus('a', 'M')).toMatchObject({ status: 'HEALTHY', message: '' });
  });

  it('keeps fractional gpus a logical share of each device', async () => {
    const { ctl, ops, addWorker } = rig(noHeadroom);
    addWorker(16, { gpus: 1 });
    ctl.deploy(appSpec('a', [{ name: 'Q', numReplicas: 5, resources: { cpus: 1, gpus: 0.25, gpuMemory: MiB } }]));
    await ctl.reconcile();
    expect(ops.starts).toHaveLength(0);
    expect(ctl.deploymentStatus('a', 'Q')!.message).toContain('gpu share 1 used + 0.25 needed > 1');
  });

  it('places on host pseudo devices only for deployments that ask for them', async () => {
    const { ctl, addWorker } = rig();
    const w = addWorker(4, { devices: [{ index: 0, name: 'host', kind: 'host', totalBytes: GiB, freeBytes: GiB }] });
    ctl.deploy(appSpec('a', [{ name: 'H', numReplicas: 2, resources: { cpus: 1, gpuMemory: 64 * MiB, sharedBlobs: [{ name: 'b', bytes: 128 * MiB }], device: 'host' } }]));
    await ctl.reconcile();
    expect(devicesOf(ctl, 'H')).toEqual([`${w}/0`, `${w}/0`]);
    expect(() => ctl.deploy(appSpec('b', [{ name: 'C', resources: { gpuMemory: 64 * MiB } }]))).toThrow(/no worker reports a GPU/);
    expect(() => ctl.deploy(appSpec('c', [{ name: 'Big', resources: { gpuMemory: GiB, device: 'host' } }]))).toThrow(/w1\/host0 \(host\): needed 1\.00 GiB/);
  });

  it('rolls an update through a full device by counting the outgoing version as leaving', async () => {
    const { ctl, ops, addWorker } = rig(noHeadroom);
    addWorker(8, { devices: [cudaDevice(0, 16 * GiB)] });
    ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2, maxOngoingRequests: 4, resources: { cpus: 1, gpuMemory: 7 * GiB } }]));
    await ctl.reconcile();
    const v1 = ctl.status().replicas.map((r) => r.replicaId);
    ctl.deploy(appSpec('a', [{ name: 'M', numReplicas: 2, maxOngoingRequests: 8, resources: { cpus: 1, gpuMemory: 7 * GiB } }]));
    for (let i = 0; i < 6 && !ctl.isReady('a'); i++) await ctl.reconcile();
    expect(ctl.isReady('a')).toBe(true);
    expect(ops.stoppedIds().sort()).toEqual([...v1].sort());
    expect(ctl.status().replicas).toHaveLength(2);
  });
});
