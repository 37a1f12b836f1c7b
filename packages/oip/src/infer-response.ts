/**
 * Open Inference Protocol (KServe v2) responses, with no transport: model outputs encoded as the inference
 * response (each tensor as JSON or with the binary tensor data extension) and the model metadata response.
 */
import { BackendError } from '@shoal/core';
import { encodeBinaryTensor } from './binary-tensor.ts';
import { TENSOR_TYPE_TO_KSERVE } from './datatypes.ts';
import { encodeJsonData } from './json-tensor.ts';
import type { Feeds, ModelMetadata, TensorData, TensorMetadata } from './tensor.ts';

export interface EncodedResponse {
  /** content-type, and inference-header-content-length when there are binary outputs; no content-length. */
  headers: Record<string, string>;
  /**
   * The body, to be written in order: the JSON header first, then one chunk per binary output. A numeric binary
   * output's chunk is a Buffer view over the output's typed array, not a copy, so the outputs must not be
   * modified until the body is written. Write the chunks in turn (corked) or with writev; `Buffer.concat(chunks,
   * byteLength)` gives one buffer, at the cost of one copy, where a transport needs that.
   */
  chunks: Buffer[];
  /** Total bytes of `chunks` (the content-length). */
  byteLength: number;
}

export interface InferResponseParts {
  model: string;
  version: string | undefined;
  /** The request's id, echoed. */
  id: string | undefined;
  outputs: Feeds;
  /** Output names to send, in order. */
  order: readonly string[];
  /** Whether an output goes as binary data (InferRequest.binary). */
  binary: (name: string) => boolean;
}

/**
 * Encodes outputs (in `order`) as an inference response. JSON outputs are written into the header; binary outputs
 * follow it as views over their tensors (BYTES outputs are length-prefixed into one new buffer each). An output in
 * `order` that the model did not return is a BackendError (500): the request was valid, the backend was not.
 */
export function encodeInferResponse(r: InferResponseParts): EncodedResponse {
  const binary: Buffer[] = [];
  const outs = r.order.map((name) => {
    const t: TensorData | undefined = r.outputs[name];
    if (t === undefined) throw new BackendError(`model "${r.model}" returned no output "${name}"`);
    const head = { name, datatype: TENSOR_TYPE_TO_KSERVE[t.type], shape: [...t.dims] };
    if (!r.binary(name)) return { ...head, data: encodeJsonData(t) };
    const bytes = encodeBinaryTensor(t);
    binary.push(bytes);
    return { ...head, parameters: { binary_data_size: bytes.byteLength } };
  });
  const header = Buffer.from(JSON.stringify({
    model_name: r.model,
    ...(r.version === undefined ? {} : { model_version: r.version }),
    ...(r.id === undefined ? {} : { id: r.id }),
    outputs: outs,
  }), 'utf8');
  const byteLength = binary.reduce((n, b) => n + b.byteLength, header.byteLength);
  if (binary.length === 0) return { headers: { 'content-type': 'application/json' }, chunks: [header], byteLength };
  return {
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.byteLength) },
    chunks: [header, ...binary],
    byteLength,
  };
}

/** The model metadata response: datatypes in the protocol's names, dynamic dims as -1. */
export function modelMetadataResponse(name: string, versions: readonly string[], platform: string, metadata: ModelMetadata): Record<string, unknown> {
  const tensor = (m: TensorMetadata): Record<string, unknown> => ({ name: m.name, datatype: TENSOR_TYPE_TO_KSERVE[m.type], shape: m.shape.map((d) => (typeof d === 'number' ? d : -1)) });
  return { name, versions: [...versions], platform, inputs: metadata.inputs.map(tensor), outputs: metadata.outputs.map(tensor) };
}
