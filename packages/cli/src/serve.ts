/**
 * `shoal serve DIR`: a model repository served by the cluster. Every selected version of every model becomes an
 * application with one onnxModel() deployment (replicas, batching and threads from the model's config.json).
 * Every ingress serves those models over the Open Inference Protocol (KServe v2) at /v2, as it does any model
 * deployment; the repository extension (index, load, unload) is answered by the head, which holds the registry.
 */
import type { Head } from '@shoal/head';
import { createKServeHandler } from '@shoal/oip';
import { DeploymentRegistry, type ModelCluster } from '@shoal/onnx';

/** The head as the registry's cluster: deploys through the controller, calls through the head's router. */
export function headModelCluster(head: Head): ModelCluster {
  return {
    deploy: (spec) => head.deploy(spec),
    remove: (app) => head.deleteApp(app),
    appReady: (app) => head.controller.isReady(app),
    appFailure: (app) => {
      const st = head.controller.status().applications.find((a) => a.name === app);
      const bad = st?.deployments.find((d) => d.status === 'UNHEALTHY');
      return bad === undefined ? undefined : `deployment "${bad.name}": ${bad.message}`;
    },
    call: (app, deployment, method, args) => head.router.call(`${app}/${deployment}`, method, args),
  };
}

export interface ServeOptions {
  /** Load every model at start (Triton's default); otherwise only on POST /v2/repository/models/NAME/load. @default true */
  loadAll?: boolean;
  /** How long one model's replicas may take to start. @default 120000 */
  loadTimeoutMs?: number;
}

/** Builds the registry over the head, gives it the repository extension, and (by default) loads every model. */
export async function serveRepository(
  head: Head,
  root: string,
  opts: ServeOptions = {},
): Promise<{ registry: DeploymentRegistry; loaded: string[]; failed: Array<{ name: string; error: string }> }> {
  const registry = new DeploymentRegistry({ root, cluster: headModelCluster(head), ...(opts.loadTimeoutMs === undefined ? {} : { loadTimeoutMs: opts.loadTimeoutMs }) });
  head.setRepository(createKServeHandler(registry));
  if (opts.loadAll === false) return { registry, loaded: [], failed: [] };
  const { loaded, failed } = await registry.loadAll();
  return { registry, loaded, failed };
}
