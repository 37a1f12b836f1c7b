/**
 * prom-client's metric classes, each loaded from its own file. prom-client's index also loads its default metrics,
 * and through them @opentelemetry/api: about 75 modules and 35-45 ms at every worker start (bench/startup's
 * profile), for collectors shoal does not use (process-metrics.ts writes its own). The classes are the very ones
 * the index exports (it requires these files), so a registry from one mixes with metrics from the other.
 */
import { createRequire } from 'node:module';
import type * as prom from 'prom-client';

const require = createRequire(import.meta.url);

export const Registry = require('prom-client/lib/registry') as typeof prom.Registry;
export type Registry = prom.Registry;
export const Counter = require('prom-client/lib/counter') as typeof prom.Counter;
export type Counter<T extends string = string> = prom.Counter<T>;
export const Gauge = require('prom-client/lib/gauge') as typeof prom.Gauge;
export type Gauge<T extends string = string> = prom.Gauge<T>;
export const Histogram = require('prom-client/lib/histogram') as typeof prom.Histogram;
export type Histogram<T extends string = string> = prom.Histogram<T>;
