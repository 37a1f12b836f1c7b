/**
 * The float32 tensor that every preprocess step returns and every postprocess step reads. It is structurally a
 * `TensorData<'float32'>` of @shoal/oip (type, dims, data), so feeds built here go to an ORT worker pool or a
 * KServe client as they are, without this package depending on either.
 */
import { ShapeMismatchError } from '@shoal/core';

export interface Tensor {
  readonly type: 'float32';
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

/** What a postprocess step reads: any float32 data with dims (a {@link Tensor}, or a model output). */
export interface FloatTensor {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

export function float32Tensor(data: Float32Array, dims: readonly number[]): Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  if (data.length !== n) throw new ShapeMismatchError(`float32Tensor: ${data.length} values do not fill dims [${dims.join(',')}] (${n} values)`);
  return { type: 'float32', data, dims };
}
