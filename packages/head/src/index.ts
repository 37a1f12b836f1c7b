export { Head, type HeadOptions, type RepositoryHandler } from './head.ts';
export { Controller, deploymentVersion, type ClusterOps, type ControllerOptions, type ClusterStatus, type ReplicaRecord, type WorkerRecord } from './controller.ts';
export { chooseWorker, fits, explainNoFit, type WorkerCapacity } from './scheduler.ts';
export { HeadMetrics, mergeMetrics, METRICS_CONTENT_TYPE, type HeadMetricsOptions, type WorkerMetricsSource } from './metrics.ts';
export { LocalWorkers, bindSharedSocket, type WorkerCommand, type SharedListenSocket, type LocalWorkersOptions } from './local-workers.ts';
export * from './state/index.ts';
export * from './experiments/index.ts';
export { routesView, type RoutesView } from './routes-api.ts';
