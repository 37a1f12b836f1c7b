/**
 * "This request never ran": the mark a refusal carries when it provably happened before any user code saw the
 * request (the replica was draining or gone, its queue full, the connection refused it or could not be opened).
 * A router retries such a request on another replica, whatever its method. The mark is a symbol on the error
 * object, so it never survives being rethrown by user code after crossing a process: an error a deployment
 * rethrows from its own downstream call is rebuilt without it, and its caller does not re-run that deployment.
 */
const NOT_RUN = Symbol.for('shoal.notRun');

/** Marks `err` as thrown before the request reached user code, and returns it. */
export function markNotRun<E extends Error>(err: E): E {
  (err as unknown as Record<symbol, boolean>)[NOT_RUN] = true;
  return err;
}

export function isNotRun(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[NOT_RUN] === true;
}
