export { Head, type HeadOptions } from './head.ts';
export { Controller, type ClusterOps, type ControllerOptions, type ClusterStatus, type ReplicaRecord, type WorkerRecord } from './controller.ts';
export { chooseWorker, fits, explainNoFit, type WorkerCapacity } from './scheduler.ts';
export { Ingress, TIMEOUT_HEADER, type IngressMetrics } from './ingress.ts';
export { HeadMetrics, mergeMetrics, METRICS_CONTENT_TYPE, type HeadMetricsOptions, type WorkerMetricsSource } from './metrics.ts';
export { LocalWorkers, workerCommand } from './local-workers.ts';
export { sendError, sendJson, readBody } from './http-util.ts';
