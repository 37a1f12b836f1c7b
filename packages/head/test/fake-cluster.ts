/** A ClusterOps that records what the controller asks and lets each test decide how workers answer. */
import { compileDeploymentOptions, FakeClock, silentLogger, type AppSpec, type DeploymentOptions } from '@shoal/core';
import type { DeviceInfo, RouteTable } from '@shoal/protocol';
import { Controller, type ClusterOps, type ControllerOptions } from '../src/controller.ts';

interface Held {
  workerId: string;
  replicaId: string;
  resolve(): void;
  reject(err: Error): void;
}

export interface StartCall extends Held { deployment: string; app: AppSpec; devices?: number[] }
export interface StopCall extends Held { timeoutMs: number }

export class FakeCluster implements ClusterOps {
  readonly starts: StartCall[] = [];
  readonly stops: StopCall[] = [];
  readonly healthChecks: Array<{ workerId: string; replicaId: string; timeoutMs: number }> = [];
  readonly reconfigures: Array<{ workerId: string; replicaId: string; userConfig: unknown }> = [];
  readonly published: Array<{ table: RouteTable; version: number }> = [];
  /** When false, starts wait until the test resolves them. */
  autoStart = true;
  autoStop = true;
  /** Returns an error to fail a start with. */
  failStart: (call: { workerId: string; replicaId: string; deployment: string }) => Error | undefined = () => undefined;
  /** Replica ids whose health check fails. */
  readonly unhealthy = new Set<string>();

  startReplica(workerId: string, replicaId: string, app: AppSpec, deployment: string, devices?: number[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const call: StartCall = { workerId, replicaId, app, deployment, resolve, reject, ...(devices === undefined ? {} : { devices }) };
      this.starts.push(call);
      const err = this.failStart(call);
      if (err !== undefined) reject(err);
      else if (this.autoStart) resolve();
    });
  }

  stopReplica(workerId: string, replicaId: string, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.stops.push({ workerId, replicaId, timeoutMs, resolve, reject });
      if (this.autoStop) resolve();
    });
  }

  reconfigure(workerId: string, replicaId: string, userConfig: unknown): Promise<void> {
    this.reconfigures.push({ workerId, replicaId, userConfig });
    return Promise.resolve();
  }

  checkHealth(workerId: string, replicaId: string, timeoutMs: number): Promise<void> {
    this.healthChecks.push({ workerId, replicaId, timeoutMs });
    return this.unhealthy.has(replicaId) ? Promise.reject(new Error(`replica ${replicaId} is wedged`)) : Promise.resolve();
  }

  readonly dropped: Array<{ workerId: string; reason: string }> = [];

  dropWorker(workerId: string, reason: string): void {
    this.dropped.push({ workerId, reason });
  }

  publishRoutes(table: RouteTable, version: number): void {
    this.published.push({ table: structuredClone(table), version });
  }

  /** The latest published table. */
  get routes(): RouteTable {
    return this.published.at(-1)?.table ?? {};
  }

  /** Replica ids in the latest table for a deployment key. */
  routed(key: string): string[] {
    return (this.routes[key]?.replicas ?? []).map((r) => r.replicaId);
  }

  stoppedIds(): string[] {
    return this.stops.map((s) => s.replicaId);
  }
}

export interface DeploymentDef extends DeploymentOptions { name: string; methods?: string[] }

export function appSpec(name: string, deployments: DeploymentDef[], extra: Partial<AppSpec> = {}): AppSpec {
  return {
    name, routePrefix: `/${name}`, ingress: deployments[0]!.name, modulePath: `/apps/${name}.ts`, exportName: 'default',
    deployments: deployments.map(({ methods, ...opts }) => ({
      name: opts.name, kind: 'class' as const, dependencies: [], methods: methods ?? ['fetch'],
      options: compileDeploymentOptions(opts, opts.name),
    })),
    ...extra,
  };
}

export interface Rig {
  ctl: Controller;
  ops: FakeCluster;
  clock: FakeClock;
  /** `gpus` CUDA devices of 80 GiB each unless `devices` says otherwise. */
  addWorker(cpus: number, more?: { gpus?: number; memory?: number; name?: string; devices?: DeviceInfo[] }): string;
}

export function rig(opts: Partial<ControllerOptions> = {}): Rig {
  const clock = new FakeClock();
  const ops = new FakeCluster();
  const ctl = new Controller({ ops, clock, logger: silentLogger, workerTimeoutMs: 3000, ...opts });
  let n = 0;
  return {
    ctl, ops, clock,
    addWorker: (cpus, more = {}) => ctl.addWorker({
      name: more.name ?? `host-${++n}`,
      resources: {
        cpus, memory: more.memory ?? 0,
        devices: more.devices ?? Array.from({ length: more.gpus ?? 0 }, (_, index) => cudaDevice(index, 80 * GiB, 80 * GiB)),
        gpus: more.devices === undefined ? more.gpus ?? 0 : more.devices.filter((d) => d.kind === 'cuda').length,
      },
      dataAddress: `ws://127.0.0.1:${9000 + n}`, pid: 1000 + n,
    }).workerId,
  };
}

export const GiB = 1024 ** 3;

/** A device as a worker reports it in hello. */
export function cudaDevice(index: number, freeBytes: number, totalBytes = freeBytes, name = 'Fake GPU'): DeviceInfo {
  return { index, name, kind: 'cuda', totalBytes, freeBytes };
}

/** Lets every promise continuation that is ready run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Replicas per worker for one deployment, from the controller's status. */
export function placement(ctl: Controller, deployment: string, state = 'RUNNING'): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of ctl.status().replicas) if (r.deployment === deployment && r.state === state) out[r.workerId] = (out[r.workerId] ?? 0) + 1;
  return out;
}
