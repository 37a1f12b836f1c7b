/**
 * @shoal/oip: the Open Inference Protocol (KServe v2 REST) with no backend in it: health, server and model
 * metadata, inference with JSON and binary tensors, and the model repository extension, over any registry of
 * models (a backend's repository, or fixedModelRegistry over deployments given by metadata() and infer()).
 * The codec is transport-free: decodeInferRequest checks a body against a model's metadata (every bad input is a
 * 400 naming it), encodeInferResponse gives the body as chunks whose binary tensors are views, not copies.
 * tensorCopies() tallies the copies of tensor bytes that remain on the data path, per site.
 *
 * @example
 * import http from 'node:http';
 * import { createKServeHandler, fixedModelRegistry, kserveRoute } from '@shoal/oip';
 * const registry = fixedModelRegistry([{
 *   name: 'double',
 *   metadata: () => ({ inputs: [{ name: 'x', type: 'float32', shape: ['batch', 2] }], outputs: [{ name: 'y', type: 'float32', shape: ['batch', 2] }] }),
 *   infer: async ({ x }) => ({ y: { type: 'float32', dims: x!.dims, data: (x!.data as Float32Array).map((v) => 2 * v) } }),
 * }]);
 * const route = kserveRoute(createKServeHandler(registry));
 * http.createServer((req, res) => { if (!route(req, res)) res.writeHead(404).end(); }).listen(8000);
 * // curl -s localhost:8000/v2/models/double/infer -d '{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}'
 * // -> {"model_name":"double","model_version":"1","outputs":[{"name":"y","datatype":"FP32","shape":[1,2],"data":[2,4]}]}
 */
export {
  TYPED_ARRAYS, TENSOR_TYPES, isTensorType, elementCount,
  type TensorType, type NumericTensorType, type NumericArray, type TensorArray, type TensorArrayMap, type TensorData, type Feeds,
  type TensorMetadata, type ModelMetadata,
} from './tensor.ts';
export { checkShape, validateFeeds } from './validate-feeds.ts';
export {
  KSERVE_TO_TENSOR_TYPE, TENSOR_TYPE_TO_KSERVE, KSERVE_DATATYPES, ELEMENT_BYTES, isKserveDatatype, toHalf, fromHalf, type KserveDatatype,
} from './datatypes.ts';
export { DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ELEMENTS } from './limits.ts';
export { parseHeaderLength } from './binary-tensor.ts';
export {
  countTensorCopy, addTensorCopies, tensorCopies, tensorCopiesBetween, type CopyPath, type CopyCount, type CopyTally, type CopyRecord, type TensorCopyStats,
} from './tensor-copies.ts';
export { decodeInferRequest, parseJsonHeader, type InferRequest, type DecodeOptions } from './infer-request.ts';
export { encodeInferResponse, modelMetadataResponse, type EncodedResponse, type InferResponseParts } from './infer-response.ts';
export type { KServeRegistry, KServeModel, ModelState, RepositoryIndexEntry } from './registry.ts';
export { fixedModelRegistry, type OipModel } from './fixed-registry.ts';
export {
  createKServeHandler, errorResponse, responseBody, responseLength, KSERVE_EXTENSIONS,
  type KServeHandler, type KServeHandlerOptions, type KServeRequest, type KServeResponse,
} from './handler.ts';
export { kserveRoute, isKServePath, type KServeRouteOptions } from './route.ts';
