export { Head, type HeadOptions } from './head.ts';
export { Controller, type ClusterOps, type ControllerOptions, type ClusterStatus, type ReplicaRecord, type WorkerRecord } from './controller.ts';
export { chooseWorker, fits, explainNoFit, type WorkerCapacity } from './scheduler.ts';
export { Ingress, TIMEOUT_HEADER } from './ingress.ts';
export { LocalWorkers, workerCommand } from './local-workers.ts';
export { sendError, sendJson, readBody } from './http-util.ts';
