/** Warm-up inputs generated from model metadata: dynamic dims take a declared size or 1, values zeros or ones. */
import { InvalidOptionError } from '@shoal/core';
import type { CompiledWarmup } from './options.ts';
import type { Feeds, ModelMetadata } from '@shoal/oip';
import { filledTensor } from './tensor.ts';

export function generateWarmupFeeds(metadata: ModelMetadata, warmup: CompiledWarmup): Feeds {
  const known = new Set(metadata.inputs.flatMap((i) => i.shape.filter((d): d is string => typeof d === 'string')));
  for (const name of Object.keys(warmup.dims)) {
    // A declared size that matches no dim is a typo; silently ignoring it would warm up the wrong shape.
    if (!known.has(name)) throw new InvalidOptionError(`warmup.dims.${name}`, `no model input has a dynamic dim of that name (dynamic dims: ${[...known].join(', ') || 'none'})`);
  }
  const feeds: Feeds = {};
  for (const input of metadata.inputs) {
    const dims = input.shape.map((d) => (typeof d === 'number' ? d : warmup.dims[d] ?? 1));
    feeds[input.name] = filledTensor(input.type, dims, warmup.fill);
  }
  return feeds;
}
