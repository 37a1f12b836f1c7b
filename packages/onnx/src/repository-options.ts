/** What a scanned repository model turns into: OrtPool options per version, and deployment options for @shoal/core. */
import type { DeploymentOptions } from '@shoal/core';
import type { RepositoryModel, RepositoryModelVersion } from './model-repository.ts';
import type { OrtPoolOptions } from './options.ts';

/** Pool settings shared by every model (logger, timeouts); the model's config.json decides the rest. */
export type PoolDefaults = Partial<Omit<OrtPoolOptions, 'model' | 'name' | 'threads' | 'intraOpThreads' | 'interOpThreads' | 'spinning' | 'nice' | 'executionProviders' | 'warmup'>>;

/** OrtPool options for one version of a repository model. */
export function poolOptionsFor(model: RepositoryModel, version: RepositoryModelVersion, defaults: PoolDefaults = {}): OrtPoolOptions {
  const c = model.config;
  return {
    ...defaults,
    model: version.path,
    name: model.name,
    threads: c.threads.sessions,
    ...(c.threads.intraOp === undefined ? {} : { intraOpThreads: c.threads.intraOp }),
    interOpThreads: c.threads.interOp,
    spinning: c.threads.spinning,
    nice: c.threads.nice,
    executionProviders: c.executionProviders,
    warmup: c.warmup,
  };
}

/** Name of the deployment serving one version: the model's name, with ".v<version>" when several versions are served. */
export function deploymentNameFor(model: RepositoryModel, version: RepositoryModelVersion): string {
  return model.versions.length === 1 ? model.name : `${model.name}.v${version.version}`;
}

/** Deployment options (name, replicas, resources) for one version of a repository model. */
export function deploymentOptionsFor(model: RepositoryModel, version: RepositoryModelVersion): DeploymentOptions {
  return { name: deploymentNameFor(model, version), numReplicas: model.config.numReplicas, resources: { ...model.config.resources } };
}
