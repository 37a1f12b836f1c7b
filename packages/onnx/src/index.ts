/**
 * @shoal/onnx: ONNX models served off the event loop (a pool of worker threads, one InferenceSession each), a
 * deployment class for @shoal/core, and a Triton-style model repository that @shoal/oip's Open Inference Protocol
 * (KServe v2) handler serves. The tensor types and the protocol live in @shoal/oip; this index re-exports what it
 * exported before they moved, so existing imports keep working.
 *
 * @example
 * import { OrtPool, onnxModel, onnxDeployment, RepositoryRegistry } from '@shoal/onnx';
 * import { createKServeHandler } from '@shoal/oip';
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
export type { ExecutionProviderName } from './thread-protocol.ts';
export { explainProviderFailure } from './ep-diagnosis.ts';
export { batchKey, batchRows, stackTensors, splitTensor, stackFeeds, splitFeeds } from './batch-tensors.ts';
export { onnxModel, canStack, defaultModelName, type OnnxModelClass, type OnnxModelInstance, type OnnxModelOptions, type OnnxBatchingOptions, type OnnxModelStats } from './onnx-deployment.ts';
export { onnxDeployment, type OnnxDeploymentOptions } from './onnx-deployment-decl.ts';
export { DeploymentRegistry, type DeploymentRegistryOptions, type ModelCluster } from './deployment-registry.ts';
export { modelVersionSpec, modelVersionApp, modelVersionModule, type ModelVersionSpec } from './repository-app.ts';
export { compileModelConfig, type ModelConfig, type CompiledModelConfig, type BatchingConfig, type ThreadsConfig, type VersionPolicy, type CompiledBatching } from './model-config.ts';
export { scanModelRepository, scanModel, selectVersions, type RepositoryScan, type RepositoryModel, type RepositoryModelVersion } from './model-repository.ts';
export { poolOptionsFor, deploymentOptionsFor, deploymentNameFor, type PoolDefaults } from './repository-options.ts';
export { RepositoryRegistry, type RepositoryRegistryOptions } from './repository-registry.ts';
export { startEventLoopDelayMonitor, measureEventLoopDelay, EventLoopDelayGauge, type EventLoopDelayStats, type EventLoopDelayMonitor } from '@shoal/core';
export { buildTinyModel, buildMlpModel, buildIdentityModel, tinyReference, IDENTITY_TYPES, TINY_W, TINY_B, type MlpOptions } from './model-builders.ts';
export { encodeModel, encodeModelBytes, type GraphSpec, type ValueInfo, type NodeSpec, type Initializer } from './onnx-writer.ts';
// Moved to @shoal/oip; re-exported under their old names for existing imports. New code imports @shoal/oip.
export {
  elementCount, type TensorType as OrtTensorType, type TensorData, type TensorArray, type TensorArrayMap, type Feeds,
  type ModelMetadata, type TensorMetadata,
  kserveRoute, isKServePath, type KServeRouteOptions,
  type KServeRegistry, type KServeModel, type ModelState, type RepositoryIndexEntry,
  createKServeHandler, errorResponse, KSERVE_EXTENSIONS, type KServeHandler, type KServeHandlerOptions, type KServeRequest, type KServeResponse,
  decodeInferRequest, encodeInferResponse, modelMetadataResponse, type InferRequest,
  KSERVE_TO_TENSOR_TYPE as KSERVE_TO_ORT, TENSOR_TYPE_TO_KSERVE as ORT_TO_KSERVE, toHalf, fromHalf, type KserveDatatype,
} from '@shoal/oip';
