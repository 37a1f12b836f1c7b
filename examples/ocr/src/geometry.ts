/**
 * Plane geometry for text boxes: convex hull, minimum-area rectangle (rotating calipers), corner ordering and
 * distances. Points are [x, y] in pixels, y growing downwards.
 */

export type Point = readonly [number, number];
/** Four corners in order top-left, top-right, bottom-right, bottom-left. */
export type Quad = readonly [Point, Point, Point, Point];

/** A rectangle by centre, unit axis `u` (along its width) and half extents along u and its normal. */
export interface RotatedRect {
  readonly center: Point;
  readonly axis: Point;
  readonly halfWidth: number;
  readonly halfHeight: number;
}

export function distance(a: Point, b: Point): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1]);
}

/** Convex hull by Andrew's monotone chain, counter-clockwise in image coordinates, no collinear points. */
export function convexHull(points: readonly Point[]): Point[] {
  const pts = [...points].sort((p, q) => p[0] - q[0] || p[1] - q[1]);
  if (pts.length < 3) return pts;
  const cross = (o: Point, a: Point, b: Point): number => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower: Point[] = [];
  for (const p of pts) {
    while (lower.length >= 2 && cross(lower[lower.length - 2]!, lower[lower.length - 1]!, p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper: Point[] = [];
  for (let i = pts.length - 1; i >= 0; i--) {
    const p = pts[i]!;
    while (upper.length >= 2 && cross(upper[upper.length - 2]!, upper[upper.length - 1]!, p) <= 0) upper.pop();
    upper.push(p);
  }
  lower.pop();
  upper.pop();
  return lower.concat(upper);
}

/** The smallest-area rectangle enclosing `points` (any rectangle for fewer than 3 non-collinear points). */
export function minAreaRect(points: readonly Point[]): RotatedRect {
  const hull = convexHull(points);
  if (hull.length === 0) return { center: [0, 0], axis: [1, 0], halfWidth: 0, halfHeight: 0 };
  // An axis-aligned candidate covers degenerate hulls and ties the search towards upright boxes.
  let best = rectAlong(hull, [1, 0]);
  for (let i = 0; i < hull.length && hull.length >= 2; i++) {
    const a = hull[i]!;
    const b = hull[(i + 1) % hull.length]!;
    const len = distance(a, b);
    if (len === 0) continue;
    const cand = rectAlong(hull, [(b[0] - a[0]) / len, (b[1] - a[1]) / len]);
    if (cand.halfWidth * cand.halfHeight < best.halfWidth * best.halfHeight - 1e-9) best = cand;
  }
  return normalizeAxis(best);
}

/** The axis-aligned bounding rectangle of `points`. */
export function boundingRect(points: readonly Point[]): RotatedRect {
  return rectAlong(points, [1, 0]);
}

function rectAlong(points: readonly Point[], u: Point): RotatedRect {
  const v: Point = [-u[1], u[0]];
  let minU = Infinity, maxU = -Infinity, minV = Infinity, maxV = -Infinity;
  for (const p of points) {
    const pu = p[0] * u[0] + p[1] * u[1];
    const pv = p[0] * v[0] + p[1] * v[1];
    if (pu < minU) minU = pu;
    if (pu > maxU) maxU = pu;
    if (pv < minV) minV = pv;
    if (pv > maxV) maxV = pv;
  }
  const cu = (minU + maxU) / 2;
  const cv = (minV + maxV) / 2;
  return { center: [cu * u[0] + cv * v[0], cu * u[1] + cv * v[1]], axis: u, halfWidth: (maxU - minU) / 2, halfHeight: (maxV - minV) / 2 };
}

/** Turns the rectangle so its axis points right-ish (|angle| <= 45 degrees), swapping extents as needed. */
function normalizeAxis(r: RotatedRect): RotatedRect {
  let [ux, uy] = r.axis;
  let hw = r.halfWidth;
  let hh = r.halfHeight;
  if (Math.abs(uy) > Math.abs(ux)) {
    [ux, uy] = [uy, -ux];
    [hw, hh] = [hh, hw];
  }
  if (ux < 0) {
    ux = -ux;
    uy = -uy;
  }
  return { center: r.center, axis: [ux, uy], halfWidth: hw, halfHeight: hh };
}

/** Grows a rectangle by `d` on every side. */
export function expandRect(r: RotatedRect, d: number): RotatedRect {
  return { ...r, halfWidth: r.halfWidth + d, halfHeight: r.halfHeight + d };
}

/** The four corners of a rectangle, ordered by {@link orderQuad}. */
export function rectCorners(r: RotatedRect): Quad {
  const [cx, cy] = r.center;
  const [ux, uy] = r.axis;
  const vx = -uy, vy = ux;
  const corner = (su: number, sv: number): Point => [cx + su * r.halfWidth * ux + sv * r.halfHeight * vx, cy + su * r.halfWidth * uy + sv * r.halfHeight * vy];
  return orderQuad([corner(-1, -1), corner(1, -1), corner(1, 1), corner(-1, 1)]);
}

/**
 * Orders four corners as PaddleOCR's get_mini_boxes does: the two leftmost points give top-left and
 * bottom-left (smaller y first), the two rightmost give top-right and bottom-right.
 */
export function orderQuad(points: readonly [Point, Point, Point, Point]): Quad {
  const p = [...points].sort((a, b) => a[0] - b[0]) as unknown as [Point, Point, Point, Point];
  const [tl, bl] = p[1][1] > p[0][1] ? [p[0], p[1]] : [p[1], p[0]];
  const [tr, br] = p[3][1] > p[2][1] ? [p[2], p[3]] : [p[3], p[2]];
  return [tl, tr, br, bl];
}

/** True when (x, y) lies inside or on the convex quad `q` (corners in either winding). */
export function insideConvexQuad(q: Quad, x: number, y: number): boolean {
  let sign = 0;
  for (let i = 0; i < 4; i++) {
    const a = q[i]!;
    const b = q[(i + 1) % 4]!;
    const c = (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]);
    if (Math.abs(c) < 1e-9) continue;
    const s = c > 0 ? 1 : -1;
    if (sign === 0) sign = s;
    else if (s !== sign) return false;
  }
  return true;
}
