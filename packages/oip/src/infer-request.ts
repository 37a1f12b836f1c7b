/**
 * The Open Inference Protocol (KServe v2) inference request, decoded from its body into feeds checked against the
 * model's metadata, with no transport: a worker ingress, the handler, or a test passes the body bytes and the
 * Inference-Header-Content-Length. Every problem is a 400 that names the input, the field and the value.
 */
import { BadRequestError, checkInt } from '@shoal/core';
import { decodeBinaryTensor } from './binary-tensor.ts';
import { KSERVE_DATATYPES, TENSOR_TYPE_TO_KSERVE, isKserveDatatype } from './datatypes.ts';
import { decodeJsonTensor } from './json-tensor.ts';
import { DEFAULT_MAX_ELEMENTS } from './limits.ts';
import type { Feeds, ModelMetadata, TensorMetadata } from './tensor.ts';
import { checkShape, inputLabel } from './validate-feeds.ts';

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

function showShape(m: TensorMetadata): string {
  return `[${m.shape.map((d) => (typeof d === 'number' ? d : -1)).join(',')}]`;
}

export interface DecodeOptions {
  /**
   * Largest element count of one input tensor, checked on the shape before any data is read or allocated; past
   * it, 400 naming this bound. The handler sets it to its maxBodyBytes unless given.
   * @default 67108864 (DEFAULT_MAX_ELEMENTS)
   */
  maxElements?: number;
}

/**
 * Decodes an inference request against the model's metadata. `headerLength` is the parsed
 * Inference-Header-Content-Length (parseHeaderLength), undefined for a JSON-only body. Checks the shape of each
 * input (checkShape) before its data, so nothing is allocated for a shape the model refuses; every problem is a
 * BadRequestError or ShapeMismatchError (both 400) naming the input and what is wrong with it. Binary inputs are
 * copied once into buffers of their own; JSON inputs are decoded straight into typed arrays.
 */
export function decodeInferRequest(model: string, metadata: ModelMetadata, body: Buffer, headerLength: number | undefined, options: DecodeOptions = {}): InferRequest {
  const maxElements = checkInt('maxElements', options.maxElements, 1, DEFAULT_MAX_ELEMENTS);
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
    const where = inputLabel(model, name);
    if (Object.hasOwn(feeds, name)) throw new BadRequestError(`${where} is given twice`);
    const datatype = raw.datatype;
    if (!isKserveDatatype(datatype)) throw new BadRequestError(`${where}: unknown datatype ${JSON.stringify(datatype) ?? '(missing)'}; expected one of ${KSERVE_DATATYPES.join(', ')}`);
    const want = TENSOR_TYPE_TO_KSERVE[meta.type];
    if (datatype !== want) throw new BadRequestError(`${where}: expected datatype ${want}, got ${datatype}`);
    const shape = checkShape(model, meta, raw.shape, maxElements);
    if (raw.parameters !== undefined && !isObject(raw.parameters)) throw new BadRequestError(`${where}: "parameters" must be an object`);
    const size = (raw.parameters as Json | undefined)?.binary_data_size;
    if (size === undefined) {
      if (raw.data === undefined) throw new BadRequestError(`${where}: has neither "data" nor parameters.binary_data_size`);
      feeds[name] = decodeJsonTensor(where, datatype, shape, raw.data);
      continue;
    }
    if (raw.data !== undefined) throw new BadRequestError(`${where}: has both "data" and parameters.binary_data_size; send one`);
    if (headerLength === undefined) throw new BadRequestError(`${where}: has parameters.binary_data_size but the request has no Inference-Header-Content-Length header`);
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new BadRequestError(`${where}: parameters.binary_data_size must be a non-negative integer, got ${JSON.stringify(size)}`);
    if (at + size > binaryEnd) throw new BadRequestError(`${where}: binary_data_size ${size} at offset ${at - headerLength} runs past the ${binaryEnd - headerLength} bytes of binary data in the body`);
    feeds[name] = decodeBinaryTensor(where, datatype, shape, body.subarray(at, at + size));
    at += size;
  }
  if (headerLength !== undefined && at !== binaryEnd) {
    throw new BadRequestError(`binary_data_size of the inputs sums to ${at - headerLength} bytes but the body holds ${binaryEnd - headerLength} bytes after the JSON header`);
  }
  for (const m of metadata.inputs) {
    if (!Object.hasOwn(feeds, m.name)) throw new BadRequestError(`missing input "${m.name}" for model "${model}" (datatype ${TENSOR_TYPE_TO_KSERVE[m.type]}, shape ${showShape(m)})`);
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
