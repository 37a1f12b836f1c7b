/**
 * A repository model version as a shoal application, in a form workers can rebuild. Workers rebuild a graph by
 * importing its module, so the module is this file with the version's spec in the query string
 * (`repository-app.ts?spec=<base64url JSON>`): its default export is then that version's application. The spec
 * is fixed when the head scans the repository, so every worker builds the same deployment even if the
 * repository changes on disk in between.
 */
import { Application, DeployError, deployment, type DeploymentOptions } from '@shoal/core';
import type { RepositoryModel, RepositoryModelVersion } from './model-repository.ts';
import { onnxModel, type OnnxModelInstance } from './onnx-deployment.ts';
import type { OrtPoolOptions } from './options.ts';
import { deploymentNameFor, deploymentOptionsFor, poolOptionsFor } from './repository-options.ts';

/** Everything a worker needs to build one version's deployment; plain JSON. */
export interface ModelVersionSpec {
  /** Repository model name. */
  model: string;
  version: string;
  /** Application name in the cluster (one application per served version). */
  app: string;
  /** Deployment name inside the application. */
  deployment: string;
  pool: Omit<OrtPoolOptions, 'logger'>;
  batching: { maxBatchSize: number; maxWaitMs: number; preferredBatchSizes: number[] } | false;
  options: DeploymentOptions;
}

const APP_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

/** The spec of one version of a scanned repository model. */
export function modelVersionSpec(m: RepositoryModel, v: RepositoryModelVersion): ModelVersionSpec {
  const app = `kserve.${m.name}.${v.version}`;
  if (!APP_NAME_RE.test(app)) throw new DeployError(`model name "${m.name}" is too long to serve: application name "${app}" must be at most 64 characters`);
  const b = m.config.batching;
  return {
    model: m.name,
    version: String(v.version),
    app,
    deployment: deploymentNameFor(m, v),
    pool: poolOptionsFor(m, v),
    batching: b === undefined ? false : { maxBatchSize: b.maxBatchSize, maxWaitMs: b.maxWaitMs, preferredBatchSizes: [...b.preferredBatchSizes] },
    // Batching gathers concurrent requests inside one replica, so each replica must be allowed many at once.
    options: { ...deploymentOptionsFor(m, v), ...(b === undefined ? {} : { maxOngoingRequests: Math.max(100, b.maxBatchSize * 4) }) },
  };
}

/** The application serving one version: a single deployment of onnxModel(). */
export function modelVersionApp(spec: ModelVersionSpec): Application<OnnxModelInstance> {
  const cls = onnxModel({ ...spec.pool, name: spec.model, version: spec.version, batching: spec.batching });
  return deployment(cls, { ...spec.options, name: spec.deployment }).bind();
}

/** The module URL a worker imports to rebuild `spec`'s application (its default export). */
export function modelVersionModule(spec: ModelVersionSpec): string {
  const base = import.meta.url.split('?')[0]!;
  return `${base}?spec=${Buffer.from(JSON.stringify(spec)).toString('base64url')}`;
}

function fromQuery(url: string): Application<OnnxModelInstance> | undefined {
  const raw = new URL(url).searchParams.get('spec');
  if (raw === null) return undefined;
  let spec: ModelVersionSpec;
  try {
    spec = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as ModelVersionSpec;
  } catch (err) {
    throw new DeployError(`${url.split('?')[0]}: the spec in the query string is not base64url JSON: ${(err as Error).message}`);
  }
  return modelVersionApp(spec);
}

const app: Application<OnnxModelInstance> | undefined = fromQuery(import.meta.url);
export default app;
