/**
 * `shoal serve DIR`: a model repository served by the cluster. Every selected version of every model becomes an
 * application with one onnxModel() deployment (replicas, batching and threads from the model's config.json), and
 * the Open Inference Protocol (KServe v2) is mounted at /v2 on the head's HTTP ingress.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Head } from '@shoal/head';
import { DeploymentRegistry, createKServeHandler, kserveRoute, type ModelCluster } from '@shoal/onnx';

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

/**
 * A route for the head's `extraRoutes` that answers nothing until `attach` gives it a handler: the head must be
 * built with its routes, and the registry needs the started head.
 */
export function lateRoute(): { route: (req: IncomingMessage, res: ServerResponse) => boolean; attach: (r: (req: IncomingMessage, res: ServerResponse) => boolean) => void } {
  let inner: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;
  return {
    route: (req, res) => inner?.(req, res) ?? false,
    attach: (r) => { inner = r; },
  };
}

export interface ServeOptions {
  /** Load every model at start (Triton's default); otherwise only on POST /v2/repository/models/NAME/load. @default true */
  loadAll?: boolean;
  /** How long one model's replicas may take to start. @default 120000 */
  loadTimeoutMs?: number;
}

/** Builds the registry over the head, mounts /v2, and (by default) loads every model of the repository. */
export async function serveRepository(
  head: Head,
  root: string,
  attach: (r: (req: IncomingMessage, res: ServerResponse) => boolean) => void,
  opts: ServeOptions = {},
): Promise<{ registry: DeploymentRegistry; loaded: string[]; failed: Array<{ name: string; error: string }> }> {
  const registry = new DeploymentRegistry({ root, cluster: headModelCluster(head), ...(opts.loadTimeoutMs === undefined ? {} : { loadTimeoutMs: opts.loadTimeoutMs }) });
  attach(kserveRoute(createKServeHandler(registry)));
  if (opts.loadAll === false) return { registry, loaded: [], failed: [] };
  const { loaded, failed } = await registry.loadAll();
  return { registry, loaded, failed };
}
