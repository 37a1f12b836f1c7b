/**
 * @shoal/onnx: ONNX models served off the event loop (a pool of worker threads, one InferenceSession each), a
 * deployment class for @shoal/core, a Triton-style model repository, and the Open Inference Protocol (KServe v2).
 *
 * @example
 * import { OrtPool, onnxModel, RepositoryRegistry, createKServeHandler } from '@shoal/onnx';
 * const pool = await OrtPool.load({ model: 'models/mlp/1/model.onnx', threads: 2, intraOpThreads: 1 });
 * const out = await pool.run({ x: { type: 'float32', dims: [1, 2048], data: new Float32Array(2048) } });
 * console.log(pool.metadata.outputs, out.y?.dims);
 * await pool.close();
 *
 * const Mlp = onnxModel({ model: 'models/mlp/1/model.onnx' });      // deployment(Mlp, { numReplicas: 2 })
 * export default onnxDeployment({ model: 'models/mlp/1/model.onnx', numReplicas: 2, batching: { maxBatchSize: 32 } }).bind();
 * const registry = await RepositoryRegistry.open({ root: 'models' });
 * const handle = createKServeHandler(registry);                     // (req) => Promise<{ status, headers, body }>
 */
export { OrtPool, type RunOptions, type OrtPoolState } from './ort-pool.ts';
export { compileOrtPoolOptions, type OrtPoolOptions, type CompiledOrtPoolOptions, type WarmupOptions, type OnnxLogger } from './options.ts';
export type { ModelMetadata, TensorMetadata, ExecutionProviderName } from './thread-protocol.ts';
export { elementCount, type OrtTensorType, type TensorData, type TensorArray, type TensorArrayMap, type Feeds } from './tensor.ts';
export { explainProviderFailure } from './ep-diagnosis.ts';
export { batchKey, batchRows, stackTensors, splitTensor, stackFeeds, splitFeeds } from './batch-tensors.ts';
export { onnxModel, canStack, defaultModelName, type OnnxModelClass, type OnnxModelInstance, type OnnxModelOptions, type OnnxBatchingOptions, type OnnxModelStats } from './onnx-deployment.ts';
export { onnxDeployment, type OnnxDeploymentOptions } from './onnx-deployment-decl.ts';
export { DeploymentRegistry, type DeploymentRegistryOptions, type ModelCluster } from './deployment-registry.ts';
export { modelVersionSpec, modelVersionApp, modelVersionModule, type ModelVersionSpec } from './repository-app.ts';
export { kserveRoute, isKServePath, type KServeRouteOptions } from './kserve-route.ts';
export { compileModelConfig, type ModelConfig, type CompiledModelConfig, type BatchingConfig, type ThreadsConfig, type VersionPolicy, type CompiledBatching } from './model-config.ts';
export { scanModelRepository, scanModel, selectVersions, type RepositoryScan, type RepositoryModel, type RepositoryModelVersion } from './model-repository.ts';
export { poolOptionsFor, deploymentOptionsFor, deploymentNameFor, type PoolDefaults } from './repository-options.ts';
export { RepositoryRegistry, type RepositoryRegistryOptions } from './repository-registry.ts';
export type { KServeRegistry, KServeModel, ModelState, RepositoryIndexEntry } from './kserve-registry.ts';
export { createKServeHandler, errorResponse, KSERVE_EXTENSIONS, type KServeHandler, type KServeHandlerOptions, type KServeRequest, type KServeResponse } from './kserve-handler.ts';
export { decodeInferRequest, encodeInferResponse, modelMetadataResponse, type InferRequest } from './kserve-codec.ts';
export { KSERVE_TO_ORT, ORT_TO_KSERVE, toHalf, fromHalf, type KserveDatatype } from './kserve-datatypes.ts';
export { startEventLoopDelayMonitor, measureEventLoopDelay, EventLoopDelayGauge, type EventLoopDelayStats, type EventLoopDelayMonitor } from '@shoal/core';
export { buildTinyModel, buildMlpModel, buildIdentityModel, tinyReference, IDENTITY_TYPES, TINY_W, TINY_B, type MlpOptions } from './model-builders.ts';
export { encodeModel, encodeModelBytes, type GraphSpec, type ValueInfo, type NodeSpec, type Initializer } from './onnx-writer.ts';
