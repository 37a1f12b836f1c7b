/** The no-op application bench/overhead serves: an ingress that answers at once, and a no-op handle target. */
import { deployment } from '@shoal/core';

export class Noop {
  fetch(): { ok: boolean } { return { ok: true }; }
  ping(x: number): number { return x; }
}

export default deployment(Noop, { maxOngoingRequests: 1000 }).bind();
