/** Shape keys: items share a batch only when the dims after the batch dim are equal. */

/** The shape key of a tensor with `dims` (batch dim first): the other dims joined by 'x', e.g. [1, 3, 224] -> "3x224". */
export function shapeKeyOf(dims: readonly number[]): string {
  return dims.slice(1).join('x');
}
