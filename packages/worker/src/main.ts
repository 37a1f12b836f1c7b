/** Entry of a worker process: `shoal worker --address ws://HOST:PORT` and the head's local workers. */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createLogger, env, InvalidOptionError, type Logger } from '@shoal/core';
import { IPC_HTTP_SOCKET, IPC_HTTP_SOCKET_REQUEST, type DeviceInfo } from '@shoal/protocol';
import type { ListenTarget } from '@shoal/ingress';
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

/** This file: what a parent runs (under tsx) to start a worker process. */
export const WORKER_ENTRY = fileURLToPath(import.meta.url);


/** Asks the parent for its listening HTTP socket and resolves with it. */
function socketFromParent(): Promise<ListenTarget> {
  return new Promise((resolve, reject) => {
    if (typeof process.send !== 'function') { reject(new InvalidOptionError('--http-from-parent', 'needs an IPC channel to the parent process (spawned with stdio "ipc")')); return; }
    const onMessage = (m: unknown, handle: unknown): void => {
      if (m !== IPC_HTTP_SOCKET || handle === undefined || handle === null) return;
      process.off('message', onMessage);
      process.channel?.unref();
      resolve({ handle: handle as object });
    };
    process.on('message', onMessage);
    process.send(IPC_HTTP_SOCKET_REQUEST);
  });
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
      'http-port': { type: 'string' },
      'http-host': { type: 'string' },
      'http-from-parent': { type: 'boolean' },
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
  let http: ListenTarget | Promise<ListenTarget> | undefined;
  if (values['http-from-parent'] && values['http-port'] !== undefined) throw new InvalidOptionError('--http-port', 'cannot be combined with --http-from-parent');
  if (values['http-port'] !== undefined) {
    const port = Number(values['http-port']);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidOptionError('--http-port', 'must be an integer port in [0, 65535]', values['http-port']);
    http = { port, host: values['http-host'] ?? '127.0.0.1' };
  } else if (values['http-host'] !== undefined) {
    throw new InvalidOptionError('--http-host', 'needs --http-port');
  } else if (values['http-from-parent']) {
    http = socketFromParent();
  }
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
    ...(http !== undefined ? { http } : {}),
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
