/**
 * 8-connected component labelling of a binary map. Each component is reported by the leftmost and rightmost
 * pixel centre of each of its rows: enough to rebuild its convex hull, at a fraction of the points.
 */
import type { Point } from './geometry.ts';

export interface Component {
  /** Number of pixels in the component. */
  readonly area: number;
  /** Leftmost and rightmost pixel centre of every row the component touches. */
  readonly outline: Point[];
  readonly minX: number;
  readonly minY: number;
  readonly maxX: number;
  readonly maxY: number;
}

export interface ComponentOptions {
  /**
   * Stop after this many components, as DB's max_candidates does, so a noisy map cannot cost unbounded time.
   * @default 1000
   */
  maxComponents?: number;
}

/** Labels the pixels where `mask` is non-zero; `mask` is row-major width x height. */
export function connectedComponents(mask: Uint8Array, width: number, height: number, opts: ComponentOptions = {}): Component[] {
  const maxComponents = opts.maxComponents ?? 1000;
  if (mask.length !== width * height) throw new RangeError(`connectedComponents: mask length ${mask.length} != width*height ${width}*${height}`);
  const seen = new Uint8Array(width * height);
  const stack = new Int32Array(width * height);
  const out: Component[] = [];
  for (let start = 0; start < mask.length && out.length < maxComponents; start++) {
    if (mask[start] === 0 || seen[start] === 1) continue;
    seen[start] = 1;
    let top = 0;
    stack[top++] = start;
    let area = 0;
    const rowMin = new Map<number, number>();
    const rowMax = new Map<number, number>();
    let minX = width, minY = height, maxX = -1, maxY = -1;
    while (top > 0) {
      const idx = stack[--top]!;
      const x = idx % width;
      const y = (idx - x) / width;
      area++;
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
      const lo = rowMin.get(y);
      if (lo === undefined || x < lo) rowMin.set(y, x);
      const hi = rowMax.get(y);
      if (hi === undefined || x > hi) rowMax.set(y, x);
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= height) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          if (nx < 0 || nx >= width || (dx === 0 && dy === 0)) continue;
          const n = ny * width + nx;
          if (mask[n] !== 0 && seen[n] === 0) {
            seen[n] = 1;
            stack[top++] = n;
          }
        }
      }
    }
    const outline: Point[] = [];
    for (let y = minY; y <= maxY; y++) {
      const lo = rowMin.get(y);
      const hi = rowMax.get(y);
      if (lo === undefined || hi === undefined) continue;
      outline.push([lo, y]);
      if (hi !== lo) outline.push([hi, y]);
    }
    out.push({ area, outline, minX, minY, maxX, maxY });
  }
  return out;
}
