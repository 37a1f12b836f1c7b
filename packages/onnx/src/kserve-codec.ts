/**
 * Open Inference Protocol (KServe v2) bodies: the inference request decoded into checked feeds, and outputs
 * encoded as the inference response, each tensor as JSON or with the binary tensor data extension.
 */
import { BackendError, BadRequestError, ShapeMismatchError } from '@shoal/core';
import { decodeBinaryTensor, encodeBinaryTensor, joinBinaryBody } from './kserve-binary.ts';
import { KSERVE_DATATYPES, ORT_TO_KSERVE, isKserveDatatype, type KserveDatatype } from './kserve-datatypes.ts';
import { decodeJsonTensor, encodeJsonData } from './kserve-json.ts';
import type { Feeds, TensorData } from './tensor.ts';
import type { ModelMetadata, TensorMetadata } from './thread-protocol.ts';
import { shapeProblem } from './validate-feeds.ts';

export interface InferRequest {
  /** The request's "id", echoed in the response. */
  id: string | undefined;
  feeds: Feeds;
  /** Outputs asked for, in order; undefined means all of the model's outputs. */
  outputs: string[] | undefined;
  /** Whether an output goes back as binary data (per-output binary_data, else binary_data_output). */
  binary(name: string): boolean;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optionalBool(v: unknown, where: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new BadRequestError(`${where} must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

/** Parses the JSON part of a body (the first `headerLength` bytes, or all of it). */
export function parseJsonHeader(body: Buffer, headerLength: number | undefined): unknown {
  const text = (headerLength === undefined ? body : body.subarray(0, headerLength)).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    const what = headerLength === undefined ? 'request body' : `JSON header (the first ${headerLength} bytes, per Inference-Header-Content-Length)`;
    throw new BadRequestError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function checkShape(name: string, v: unknown): number[] {
  if (!Array.isArray(v)) throw new BadRequestError(`input "${name}": "shape" must be an array of non-negative integers, got ${JSON.stringify(v) ?? 'nothing'}`);
  v.forEach((d, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) throw new BadRequestError(`input "${name}": shape[${i}] must be a non-negative integer, got ${JSON.stringify(d)}`);
  });
  return v as number[];
}

function showShape(m: TensorMetadata): string {
  return `[${m.shape.map((d) => (typeof d === 'number' ? d : -1)).join(',')}]`;
}

/**
 * Decodes an inference request against the model's metadata. Every problem is a BadRequestError (400) or a
 * ShapeMismatchError (400) naming the input and what is wrong with it.
 */
export function decodeInferRequest(model: string, metadata: ModelMetadata, body: Buffer, headerLength: number | undefined): InferRequest {
  const req = parseJsonHeader(body, headerLength);
  if (!isObject(req)) throw new BadRequestError('inference request must be a JSON object');
  if (req.id !== undefined && typeof req.id !== 'string') throw new BadRequestError(`"id" must be a string, got ${JSON.stringify(req.id)}`);
  if (req.parameters !== undefined && !isObject(req.parameters)) throw new BadRequestError('"parameters" must be an object');
  const binaryAll = optionalBool((req.parameters as Json | undefined)?.binary_data_output, 'parameters.binary_data_output') ?? false;
  if (!Array.isArray(req.inputs) || req.inputs.length === 0) throw new BadRequestError(`"inputs" must be a non-empty array of input tensors (model "${model}" takes ${metadata.inputs.map((i) => i.name).join(', ')})`);

  const byName = new Map(metadata.inputs.map((i) => [i.name, i]));
  const feeds: Feeds = {};
  const binaryEnd = body.byteLength;
  let at = headerLength ?? binaryEnd;
  for (const [k, raw] of req.inputs.entries()) {
    if (!isObject(raw)) throw new BadRequestError(`inputs[${k}] must be an object with name, shape, datatype and data`);
    const name = raw.name;
    if (typeof name !== 'string') throw new BadRequestError(`inputs[${k}].name must be a string, got ${JSON.stringify(name) ?? 'nothing'}`);
    const meta = byName.get(name);
    if (meta === undefined) throw new BadRequestError(`unknown input "${name}" for model "${model}"; inputs are: ${[...byName.keys()].join(', ')}`);
    if (feeds[name] !== undefined) throw new BadRequestError(`input "${name}" is given twice`);
    const datatype = raw.datatype;
    if (!isKserveDatatype(datatype)) throw new BadRequestError(`input "${name}": unknown datatype ${JSON.stringify(datatype) ?? '(missing)'}; expected one of ${KSERVE_DATATYPES.join(', ')}`);
    const want = ORT_TO_KSERVE[meta.type];
    if (datatype !== want) throw new BadRequestError(`input "${name}" of model "${model}": expected datatype ${want}, got ${datatype}`);
    const shape = checkShape(name, raw.shape);
    const problem = shapeProblem(meta.shape, shape);
    if (problem !== undefined) throw new ShapeMismatchError(`input "${name}" of model "${model}": ${problem}`);
    if (raw.parameters !== undefined && !isObject(raw.parameters)) throw new BadRequestError(`input "${name}": "parameters" must be an object`);
    const size = (raw.parameters as Json | undefined)?.binary_data_size;
    if (size === undefined) {
      if (raw.data === undefined) throw new BadRequestError(`input "${name}": has neither "data" nor parameters.binary_data_size`);
      feeds[name] = decodeJsonTensor(name, datatype, shape, raw.data);
      continue;
    }
    if (raw.data !== undefined) throw new BadRequestError(`input "${name}": has both "data" and parameters.binary_data_size; send one`);
    if (headerLength === undefined) throw new BadRequestError(`input "${name}": has parameters.binary_data_size but the request has no Inference-Header-Content-Length header`);
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new BadRequestError(`input "${name}": parameters.binary_data_size must be a non-negative integer, got ${JSON.stringify(size)}`);
    if (at + size > binaryEnd) throw new BadRequestError(`input "${name}": binary_data_size ${size} at offset ${at - headerLength} runs past the ${binaryEnd - headerLength} bytes of binary data in the body`);
    feeds[name] = decodeBinaryTensor(name, datatype, shape, body.subarray(at, at + size));
    at += size;
  }
  if (headerLength !== undefined && at !== binaryEnd) {
    throw new BadRequestError(`binary_data_size of the inputs sums to ${at - headerLength} bytes but the body holds ${binaryEnd - headerLength} bytes after the JSON header`);
  }
  for (const m of metadata.inputs) {
    if (feeds[m.name] === undefined) throw new BadRequestError(`missing input "${m.name}" for model "${model}" (datatype ${ORT_TO_KSERVE[m.type]}, shape ${showShape(m)})`);
  }

  let outputs: string[] | undefined;
  const perOutput = new Map<string, boolean>();
  if (req.outputs !== undefined) {
    if (!Array.isArray(req.outputs)) throw new BadRequestError('"outputs" must be an array');
    const known = new Set(metadata.outputs.map((o) => o.name));
    outputs = req.outputs.map((o: unknown, k) => {
      if (!isObject(o) || typeof o.name !== 'string') throw new BadRequestError(`outputs[${k}] must be an object with a string "name"`);
      if (!known.has(o.name)) throw new BadRequestError(`unknown output "${o.name}" for model "${model}"; outputs are: ${[...known].join(', ')}`);
      if (o.parameters !== undefined && !isObject(o.parameters)) throw new BadRequestError(`output "${o.name}": "parameters" must be an object`);
      const b = optionalBool((o.parameters as Json | undefined)?.binary_data, `output "${o.name}": parameters.binary_data`);
      if (b !== undefined) perOutput.set(o.name, b);
      return o.name;
    });
    if (outputs.length === 0) outputs = undefined;
  }
  return {
    id: req.id as string | undefined,
    feeds,
    outputs,
    binary: (name) => perOutput.get(name) ?? binaryAll,
  };
}

export interface EncodedResponse { body: Buffer; headers: Record<string, string> }

/** Encodes outputs (in `order`) as an inference response; binary outputs follow the JSON header. */
export function encodeInferResponse(r: {
  model: string; version: string | undefined; id: string | undefined; outputs: Feeds; order: readonly string[]; binary: (name: string) => boolean;
}): EncodedResponse {
  const chunks: Uint8Array[] = [];
  const outs = r.order.map((name) => {
    const t: TensorData | undefined = r.outputs[name];
    if (t === undefined) throw new BackendError(`model "${r.model}" returned no output "${name}"`);
    const head = { name, datatype: ORT_TO_KSERVE[t.type] as KserveDatatype, shape: [...t.dims] };
    if (!r.binary(name)) return { ...head, data: encodeJsonData(t) };
    const bytes = encodeBinaryTensor(t);
    chunks.push(bytes);
    return { ...head, parameters: { binary_data_size: bytes.byteLength } };
  });
  const header = {
    model_name: r.model,
    ...(r.version === undefined ? {} : { model_version: r.version }),
    ...(r.id === undefined ? {} : { id: r.id }),
    outputs: outs,
  };
  if (chunks.length === 0) {
    return { body: Buffer.from(JSON.stringify(header), 'utf8'), headers: { 'content-type': 'application/json' } };
  }
  const { body, headerLength } = joinBinaryBody(header, chunks);
  return { body, headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) } };
}

/** The model metadata response: dynamic dims are -1. */
export function modelMetadataResponse(name: string, versions: readonly string[], platform: string, metadata: ModelMetadata): Json {
  const tensor = (m: TensorMetadata): Json => ({ name: m.name, datatype: ORT_TO_KSERVE[m.type], shape: m.shape.map((d) => (typeof d === 'number' ? d : -1)) });
  return { name, versions: [...versions], platform, inputs: metadata.inputs.map(tensor), outputs: metadata.outputs.map(tensor) };
}
