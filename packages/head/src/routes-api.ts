/**
 * GET /api/routes: the route table the head pushes to workers (where each deployment's RUNNING replicas are, at
 * which worker data address), with its version and each deployment's methods. A client outside the cluster
 * (`shoal batch`) routes its calls with it straight to the workers' data servers, as a worker's router does: the
 * head is on the control path only.
 */
import type { RouteTable } from '@shoal/protocol';
import type { Controller } from './controller.ts';

export interface RoutesView {
  /** The route table's version: a client keeps the newest it has seen (Router.updateRoutes). */
  version: number;
  table: RouteTable;
  /**
   * Per deployment key (`app/deployment`), the methods its class declares (DeploymentSpec.methods). Batched
   * methods are class fields, so they are not listed: a name missing here may still be one.
   */
  deployments: Record<string, { methods: string[] }>;
}

export function routesView(controller: Pick<Controller, 'currentRoutes' | 'appSpecs'>): RoutesView {
  const { table, version } = controller.currentRoutes();
  const deployments: RoutesView['deployments'] = {};
  for (const app of controller.appSpecs()) for (const d of app.deployments) deployments[`${app.name}/${d.name}`] = { methods: [...d.methods] };
  return { version, table, deployments };
}
