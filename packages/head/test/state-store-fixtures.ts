/** Specs and workers the state store tests write, shared with the child process they spawn. */
import { validateAppSpec, type AppSpec } from '@shoal/core';
import type { AppMeta, SeenWorker } from '../src/state/index.ts';

/** A one-deployment application ("Model"), compiled as the head's control API would. */
export function appSpec(name: string, numReplicas = 1, modulePath = '/srv/app.ts'): AppSpec {
  return validateAppSpec({
    name, routePrefix: `/${name}`, ingress: 'Model', modulePath, exportName: 'default',
    deployments: [{ name: 'Model', kind: 'class', options: { numReplicas }, dependencies: [], methods: ['predict'] }],
  });
}

export function meta(versionId: string, deployedAtMs = 1_700_000_000_000): AppMeta {
  return { deployedAtMs, versions: { Model: versionId } };
}

export function workers(n: number, tag = 'w'): SeenWorker[] {
  return Array.from({ length: n }, (_, i) => ({ name: `${tag}${i}`, dataAddress: `ws://127.0.0.1:${7500 + i}`, workerId: `w${i + 1}`, local: i % 2 === 0, pid: 4000 + i }));
}
