export { Worker, type WorkerOptions } from './worker.ts';
export { Replica, type ReplicaInstance, type ReplicaInit } from './replica.ts';
export { buildInstance, loadApplication, importAppModule } from './module-loader.ts';
export { WorkerMetrics, type WorkerMetricsOptions, type NativeGaugeSample, type MetricsJson } from './worker-metrics.ts';
export { dispatchOverPeer } from './transport.ts';
export { registerTypeScript, isTypeScriptModule } from './typescript-loader.ts';
