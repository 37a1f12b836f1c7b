/**
 * Cost per request from a deployment's series: what its replicas held (allocated: declared cpus and devices times
 * the time each replica existed) priced per core-hour and device-hour, over the requests answered; and how much of
 * the replica time was idle (no request in user code). You pay for what is allocated, busy or not.
 */
import type { Window } from './series.ts';

/** Prices per hour of one core and of one device (GPU); currency-less units. */
export interface Prices { coreHour: number; deviceHour: number }

export interface CostFigures {
  windowMs: number;
  requests: number;
  allocatedCoreHours: number;
  allocatedDeviceHours: number;
  busyCoreHours: number;
  busyDeviceHours: number;
  /** allocated core-hours x coreHour + allocated device-hours x deviceHour; null without prices. */
  cost: number | null;
  /** cost / requests x 1000; null without prices or requests. */
  costPer1kRequests: number | null;
  /**
   * The same from measured busy time only (busy core-hours x coreHour + busy device-hours x deviceHour, per 1,000
   * requests): what the requests themselves used. costPer1kRequests - this = what idle capacity adds to each.
   */
  busyCostPer1kRequests: number | null;
  /** 1 - busy replica time / allocated replica time; null before any replica time. */
  idleShare: number | null;
}

const HOUR_MS = 3_600_000;

export function costOf(w: Window, prices: Prices | undefined): CostFigures {
  const d = (k: 'allocCoreMs' | 'allocDeviceMs' | 'busyCoreMs' | 'busyDeviceMs' | 'allocMs' | 'busyMs'): number => w.to[k] - w.from[k];
  const requests = w.to.requests - w.from.requests;
  const allocatedCoreHours = d('allocCoreMs') / HOUR_MS;
  const allocatedDeviceHours = d('allocDeviceMs') / HOUR_MS;
  const cost = prices === undefined ? null : allocatedCoreHours * prices.coreHour + allocatedDeviceHours * prices.deviceHour;
  const busyCost = prices === undefined ? null : (d('busyCoreMs') / HOUR_MS) * prices.coreHour + (d('busyDeviceMs') / HOUR_MS) * prices.deviceHour;
  const alloc = d('allocMs');
  // Heartbeats are timed on the head and busy time on the worker: at full load a short window may read a few ms
  // busier than allocated; that is 0 idle, not a negative share.
  const idleShare = alloc > 0 ? Math.max(0, 1 - d('busyMs') / alloc) : null;
  return {
    windowMs: w.spanMs, requests, allocatedCoreHours, allocatedDeviceHours,
    busyCoreHours: d('busyCoreMs') / HOUR_MS, busyDeviceHours: d('busyDeviceMs') / HOUR_MS,
    cost, costPer1kRequests: cost !== null && requests > 0 ? (cost / requests) * 1000 : null,
    busyCostPer1kRequests: busyCost !== null && requests > 0 ? (busyCost / requests) * 1000 : null, idleShare,
  };
}
