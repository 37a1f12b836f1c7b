/**
 * Rebuilds a replica's user instance from the application module: imports the module, finds the graph node by
 * deployment name, and constructs it with bound deployments replaced by handles.
 */
import { pathToFileURL } from 'node:url';
import { Application, DeployError, collectGraph, moduleCodeHash, requestContext, streamMethodNames, type AppSpec, type Handle } from '@shoal/core';
import { createHandle, type Router } from '@shoal/router';
import type { ReplicaInstance } from './replica.ts';
import { registerTypeScript } from './typescript-loader.ts';

const modules = new Map<string, Promise<Record<string, unknown>>>();

/**
 * Imports an application module once per (path, codeHash): two versions of one file run side by side in one
 * worker, each under its own URL (`?v=<codeHash>`). With a codeHash, the file read here must still hash to it: a
 * version whose code has since changed on disk fails to start, rather than run code it was not deployed with.
 */
export async function importAppModule(modulePath: string, codeHash?: string): Promise<Record<string, unknown>> {
  const key = codeHash === undefined ? modulePath : `${modulePath}\u0000${codeHash}`;
  let p = modules.get(key);
  if (p === undefined) {
    const base = /^[a-z]+:/i.test(modulePath) ? modulePath : pathToFileURL(modulePath).href;
    p = (async () => {
      await registerTypeScript(base);
      if (codeHash !== undefined && /^file:/i.test(base)) {
        const found = await moduleCodeHash(base);
        if (found !== codeHash) {
          throw new DeployError(`module ${modulePath} has changed since this version was deployed: it hashes to ${found.slice(0, 16)} here, the version was deployed from ${codeHash.slice(0, 16)}; deploy it again (or restore the file)`);
        }
      }
      return await import(codeHash === undefined ? base : `${base}${base.includes('?') ? '&' : '?'}v=${codeHash.slice(0, 16)}`) as Record<string, unknown>;
    })();
    modules.set(key, p);
    p.catch(() => modules.delete(key));
  }
  return p;
}

export async function loadApplication(spec: Pick<AppSpec, 'modulePath' | 'exportName' | 'codeHash'>): Promise<Application> {
  const mod = await importAppModule(spec.modulePath, spec.codeHash);
  const app = mod[spec.exportName];
  if (!Application.isApplication(app)) {
    throw new DeployError(`export "${spec.exportName}" of ${spec.modulePath} is not an application (call .bind() on a deployment); exports: ${Object.keys(mod).join(', ')}`);
  }
  return app;
}

export async function buildInstance(spec: AppSpec, deploymentName: string, router: Router): Promise<ReplicaInstance> {
  const root = await loadApplication(spec);
  const node = collectGraph(root).get(deploymentName);
  if (node === undefined) throw new DeployError(`application "${spec.name}" has no deployment "${deploymentName}"`);
  const methodsOf = new Map(spec.deployments.map((d) => [d.name, d.methods]));
  const toHandle = (app: Application): Handle<unknown> => createHandle({
    router,
    key: `${spec.name}/${app.deployment.options.name}`,
    methods: methodsOf.get(app.deployment.options.name) ?? [],
    streams: streamMethodNames(app.deployment.factory as new (...a: never[]) => unknown),
    inheritedDeadline: () => requestContext()?.deadline,
    inheritedSignal: () => requestContext()?.signal,
    inheritedPriority: () => requestContext()?.priority,
    inheritedModelId: () => requestContext()?.modelId,
    inheritedRequest: () => requestContext(),
  });
  const args = node.args.map((a) => replaceApplications(a, toHandle));
  const Factory = node.deployment.factory as unknown as new (...a: unknown[]) => ReplicaInstance;
  return new Factory(...args);
}

function replaceApplications(value: unknown, toHandle: (app: Application) => unknown): unknown {
  if (Application.isApplication(value)) return toHandle(value);
  if (Array.isArray(value)) return value.map((v) => replaceApplications(v, toHandle));
  if (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, replaceApplications(v, toHandle)]));
  }
  return value;
}
