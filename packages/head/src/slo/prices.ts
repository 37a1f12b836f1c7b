/**
 * The head's prices for cost per request: per core-hour and per device-hour, currency-less. Checked once, when the
 * head is made; an error names the option (or the flag or variable it came from) and the value.
 */
import { InvalidOptionError } from '@shoal/core';
import type { Prices } from './cost.ts';

export interface PriceOptions {
  /** Price of one CPU core (resources.cpus) for an hour. @default 0 when deviceHour is given, else no cost figures */
  coreHour?: number;
  /** Price of one device (resources.gpus, CUDA) for an hour. @default 0 when coreHour is given, else no cost figures */
  deviceHour?: number;
}

/** Prices, or undefined when neither is given (status then shows idle share but no cost). `names`: what to call each in errors. */
export function compilePrices(p: PriceOptions | undefined, names: { coreHour: string; deviceHour: string } = { coreHour: 'prices.coreHour', deviceHour: 'prices.deviceHour' }): Prices | undefined {
  if (p === undefined || (p.coreHour === undefined && p.deviceHour === undefined)) return undefined;
  const check = (name: string, v: unknown): number => {
    if (v === undefined) return 0;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new InvalidOptionError(name, 'must be a non-negative number (a price per hour)', v);
    return v;
  };
  return { coreHour: check(names.coreHour, p.coreHour), deviceHour: check(names.deviceHour, p.deviceHour) };
}
