/** Entry of a worker process: `shoal worker --address ws://HOST:PORT` and the head's local workers. */
import { parseArgs } from 'node:util';
import { createLogger, env, InvalidOptionError, type Logger } from '@shoal/core';
import type { DeviceInfo } from '@shoal/protocol';
import { Worker } from './worker.ts';
import type { NativeGaugeSample } from './worker-metrics.ts';

/**
 * Devices from the native addon (CUDA GPUs, else the host backend's pseudo device) and its gauges for metrics;
 * no devices and no gauges when it is not built.
 */
async function detectDevices(logger: Logger): Promise<{ devices: DeviceInfo[]; metrics?: () => NativeGaugeSample[] }> {
  try {
    // The process's one runtime: replicas of family deployments share it, and with it their weight blobs.
    const { processRuntime } = await import('@shoal/native');
    const rt = processRuntime({ logger: logger.child('native') });
    const devices = rt.devices().map((d): DeviceInfo => ({
      index: d.index, name: d.name, kind: d.backend === 'cuda' ? 'cuda' : 'host', totalBytes: d.totalBytes, freeBytes: d.freeBytes,
      ...(d.computeCapability !== null ? { computeCapability: d.computeCapability } : {}),
    }));
    return { devices, metrics: () => rt.metrics() };
  } catch (err) {
    logger.info('native addon unavailable; this worker reports no devices', { reason: (err as Error).message });
    return { devices: [] };
  }
}

export async function runWorker(argv: string[]): Promise<Worker> {
  const { values } = parseArgs({
    args: argv,
    options: {
      address: { type: 'string' },
      token: { type: 'string' },
      host: { type: 'string' },
      'advertise-host': { type: 'string' },
      cpus: { type: 'string' },
      memory: { type: 'string' },
    },
    allowPositionals: false,
  });
  const address = values.address ?? env.address();
  if (address === undefined) throw new InvalidOptionError('--address', 'is required (ws://HOST:PORT of the head), or set SHOAL_ADDRESS');
  const token = values.token ?? env.token();
  if (token === undefined) throw new InvalidOptionError('--token', 'is required (the cluster token printed by `shoal start`), or set SHOAL_TOKEN');
  const cpus = values.cpus === undefined ? undefined : Number(values.cpus);
  if (cpus !== undefined && !(cpus > 0)) throw new InvalidOptionError('--cpus', 'must be a positive number', values.cpus);
  const memory = values.memory === undefined ? undefined : Number(values.memory);
  if (memory !== undefined && !(memory > 0)) throw new InvalidOptionError('--memory', 'must be a positive number of bytes', values.memory);
  const logger = createLogger(`worker ${process.pid}`);
  const { devices, metrics: nativeMetrics } = await detectDevices(logger);
  const worker = new Worker({
    devices,
    ...(nativeMetrics ? { nativeMetrics } : {}),
    address: address.replace(/^http/, 'ws'), token, logger, maxFrameBytes: env.maxFrameBytes(),
    ...(values.host ? { host: values.host } : {}),
    ...(values['advertise-host'] ? { advertiseHost: values['advertise-host'] } : {}),
    ...(cpus !== undefined ? { cpus } : {}),
    ...(memory !== undefined ? { memory } : {}),
    onHeadLost: (reason) => { logger.error('head connection lost; exiting', { reason }); process.exit(1); },
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    worker.stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await worker.start();
  return worker;
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  runWorker(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`shoal worker: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
