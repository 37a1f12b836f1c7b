/**
 * A tally, per JS thread (the main thread's stands for the process), of the copies made of tensor bytes on their
 * way between the HTTP body and the backend (`input`) and back to the socket (`output`). Each site that copies
 * tensor bytes counts the bytes it copied; a site that passes them on as a view or a transferred buffer counts
 * nothing. A worker thread reports its copies to the thread that started it (addTensorCopies), so the main
 * thread's tally holds them too. It exists so a test can assert how many times a tensor is copied, not only that it arrives.
 * It counts numeric tensors: strings (BYTES) are converted at every hop (UTF-8 to JS strings and back), never
 * passed on as bytes, so there is no copy of theirs to avoid. Only @shoal/oip's and the ONNX backend's sites
 * count: copies elsewhere (joining the HTTP body's chunks, a remote call's frame) are not in the tally.
 */

/** Which way the bytes are going: from the request to the backend, or from the backend to the response. */
export type CopyPath = 'input' | 'output';

export interface CopyCount {
  /** Copies made. */
  count: number;
  /** Bytes copied, over all those copies. */
  bytes: number;
}

/** One path's copies, in total and per site (a stable name such as "oip.decode-binary"). */
export interface CopyTally extends CopyCount {
  sites: Record<string, CopyCount>;
}

export interface TensorCopyStats {
  input: CopyTally;
  output: CopyTally;
}

/** One copy, as a worker thread reports it. */
export interface CopyRecord {
  path: CopyPath;
  site: string;
  bytes: number;
}

const tally: TensorCopyStats = { input: { count: 0, bytes: 0, sites: {} }, output: { count: 0, bytes: 0, sites: {} } };

/** Counts one copy of `bytes` tensor bytes at `site` on `path`. */
export function countTensorCopy(path: CopyPath, site: string, bytes: number): void {
  const t = tally[path];
  t.count++;
  t.bytes += bytes;
  const s = t.sites[site] ?? (t.sites[site] = { count: 0, bytes: 0 });
  s.count++;
  s.bytes += bytes;
}

/** Adds copies another thread made and reported. */
export function addTensorCopies(records: readonly CopyRecord[]): void {
  for (const r of records) countTensorCopy(r.path, r.site, r.bytes);
}

/** A snapshot of this thread's tally since it started (take two and subtract to count one request's copies). */
export function tensorCopies(): TensorCopyStats {
  const copy = (t: CopyTally): CopyTally => ({ count: t.count, bytes: t.bytes, sites: Object.fromEntries(Object.entries(t.sites).map(([k, v]) => [k, { ...v }])) });
  return { input: copy(tally.input), output: copy(tally.output) };
}

/** The copies counted between two snapshots (after defaults to now), leaving out sites with none in between. */
export function tensorCopiesBetween(before: TensorCopyStats, after: TensorCopyStats = tensorCopies()): TensorCopyStats {
  const between = (b: CopyTally, a: CopyTally): CopyTally => {
    const sites: Record<string, CopyCount> = {};
    for (const [site, n] of Object.entries(a.sites)) {
      const count = n.count - (b.sites[site]?.count ?? 0);
      if (count > 0) sites[site] = { count, bytes: n.bytes - (b.sites[site]?.bytes ?? 0) };
    }
    return { count: a.count - b.count, bytes: a.bytes - b.bytes, sites };
  };
  return { input: between(before.input, after.input), output: between(before.output, after.output) };
}
