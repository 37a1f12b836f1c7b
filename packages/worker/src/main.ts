/**
 * Entry of a worker process: `shoal worker --address ws://HOST:PORT` and the head's local workers.
 *
 * User code runs in this process, so: the cluster token is taken out of the environment before any user module
 * loads, and an unhandled rejection or uncaught exception is logged instead of ending the process (and with it
 * every replica it hosts).
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { applyTracingFlags, createLogger, describeThrown, env, InvalidOptionError, startTracing, stopTracing, tracingFromEnv, type Logger } from '@shoal/core';
import { IPC_HTTP_SOCKET, IPC_HTTP_SOCKET_REQUEST, isListenError, listenErrorFor, probePort, resolveToken, type DeviceInfo } from '@shoal/protocol';
import type { ListenTarget } from '@shoal/ingress';
import { Worker } from './worker.ts';
import type { NativeGaugeSample } from './worker-metrics.ts';

/**
 * Devices from the native addon (CUDA GPUs, else the host backend's pseudo device) and its gauges for metrics;
 * no devices and no gauges when it is not built. SHOAL_TEST_HOST_DEVICES replaces the devices with faked host ones.
 */
async function detectDevices(logger: Logger): Promise<{ devices: DeviceInfo[]; metrics?: () => NativeGaugeSample[] }> {
  const found = await nativeDevices(logger);
  const fake = env.testHostDevices();
  if (fake === undefined) return found;
  const like = found.devices.find((d) => d.kind === 'host');
  const bytes = like?.totalBytes ?? 2 ** 30;
  logger.warn('SHOAL_TEST_HOST_DEVICES: reporting faked host devices (for tests only)', { count: fake, found: found.devices.length });
  return {
    ...found,
    // All alike and all free, so that placement among them depends only on what the head placed there.
    devices: Array.from({ length: fake }, (_, index): DeviceInfo => ({ index, name: `host (test ${index})`, kind: 'host', totalBytes: bytes, freeBytes: bytes })),
  };
}

async function nativeDevices(logger: Logger): Promise<{ devices: DeviceInfo[]; metrics?: () => NativeGaugeSample[] }> {
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
    logger.info('native addon unavailable; this worker reports no devices', { reason: describeThrown(err) });
    return { devices: [] };
  }
}

/** How long a local worker (spawned by its head) tries to reach that head before it exits. */
const LOCAL_CONNECT_TIMEOUT_MS = 30_000;

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

/**
 * Logs what user code left unhandled and goes on: Node's default (exit) would take every co-located replica down
 * for one replica's forgotten promise. Installed once per process.
 */
let faultHandlersInstalled = false;
function keepServingOnUnhandled(logger: Logger): void {
  if (faultHandlersInstalled) return;
  faultHandlersInstalled = true;
  process.on('unhandledRejection', (reason: unknown) => {
    logger.error('unhandled promise rejection (a promise no code awaited); the worker goes on', { error: describeThrown(reason) });
  });
  process.on('uncaughtException', (err: unknown, origin: string) => {
    logger.error('uncaught exception; the worker goes on', { origin, error: describeThrown(err) });
  });
}

function portFlag(flag: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidOptionError(flag, 'must be an integer port in [0, 65535]', raw);
  return port;
}

export async function runWorker(argv: string[]): Promise<Worker> {
  const { values } = parseArgs({
    args: argv,
    options: {
      address: { type: 'string' },
      token: { type: 'string' },
      'token-file': { type: 'string' },
      'data-port': { type: 'string' },
      host: { type: 'string' },
      'advertise-host': { type: 'string' },
      cpus: { type: 'string' },
      memory: { type: 'string' },
      'http-port': { type: 'string' },
      'http-host': { type: 'string' },
      'http-from-parent': { type: 'boolean' },
      // Set by the head on the workers it spawns (LocalWorkers); the hello will carry it.
      local: { type: 'boolean' },
      'otlp-endpoint': { type: 'string' },
      'trace-sample-ratio': { type: 'string' },
    },
    allowPositionals: false,
  });
  const logger = createLogger('worker');
  keepServingOnUnhandled(logger);
  const token = resolveToken({ token: values.token, tokenFile: values['token-file'] }, (m) => logger.warn(m));
  // Replicas run in this process and must not find the cluster token in their environment. (Linux still shows
  // the environment the process started with in /proc/self/environ: local workers get it on stdin instead.)
  delete process.env.SHOAL_TOKEN;
  const address = values.address ?? env.address();
  if (address === undefined) throw new InvalidOptionError('--address', 'is required (ws://HOST:PORT of the head), or set SHOAL_ADDRESS');
  if (token === undefined) throw new InvalidOptionError('--token-file', 'is required (a file holding the cluster token that `shoal start` printed), or set SHOAL_TOKEN');
  const dataPort = portFlag('--data-port', values['data-port']);
  const cpus = values.cpus === undefined ? undefined : Number(values.cpus);
  if (cpus !== undefined && !(cpus > 0)) throw new InvalidOptionError('--cpus', 'must be a positive number', values.cpus);
  const memory = values.memory === undefined ? undefined : Number(values.memory);
  if (memory !== undefined && !(memory > 0)) throw new InvalidOptionError('--memory', 'must be a positive number of bytes', values.memory);
  let http: ListenTarget | Promise<ListenTarget> | undefined;
  if (values['http-from-parent'] && values['http-port'] !== undefined) throw new InvalidOptionError('--http-port', 'cannot be combined with --http-from-parent');
  const httpPort = portFlag('--http-port', values['http-port']);
  if (httpPort !== undefined) {
    http = { port: httpPort, host: values['http-host'] ?? '127.0.0.1' };
    // The ingress listens only once the head has sent the applications; a busy port must fail the command now.
    await probePort('--http-port', http.host, httpPort);
  } else if (values['http-host'] !== undefined) {
    throw new InvalidOptionError('--http-host', 'needs --http-port');
  } else if (values['http-from-parent']) {
    http = socketFromParent();
  }
  applyTracingFlags(values['otlp-endpoint'], values['trace-sample-ratio']);
  const tracing = tracingFromEnv('shoal-worker', { 'shoal.role': 'worker', 'process.pid': String(process.pid) });
  if (tracing !== undefined) await startTracing(tracing, (msg, fields) => logger.warn(msg, fields));
  const { devices, metrics: nativeMetrics } = await detectDevices(logger);
  const worker = new Worker({
    devices,
    ...(nativeMetrics ? { nativeMetrics } : {}),
    address: address.replace(/^http/, 'ws'), token, logger, maxFrameBytes: env.maxFrameBytes(),
    ...(values.host ? { host: values.host } : {}),
    ...(dataPort !== undefined ? { dataPort } : {}),
    ...(values['advertise-host'] ? { advertiseHost: values['advertise-host'] } : {}),
    ...(cpus !== undefined ? { cpus } : {}),
    ...(memory !== undefined ? { memory } : {}),
    ...(http !== undefined ? { http } : {}),
    local: values.local === true,
    // A local worker's head is up before it spawns it: one that cannot be reached for long is gone, and so is the
    // point of waiting. A remote worker may start before its head (pods start in any order) and waits for it.
    connectTimeoutMs: values.local === true ? LOCAL_CONNECT_TIMEOUT_MS : env.connectTimeoutMs(),
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    worker.stop().then(() => stopTracing()).catch(() => undefined).finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  try {
    await worker.start();
  } catch (err) {
    // The data port is listened on first, before the head is reached.
    if (isListenError(err)) throw listenErrorFor(err, '--data-port', values.host ?? '127.0.0.1', dataPort ?? 0)!;
    throw err;
  }
  return worker;
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  runWorker(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`shoal worker: ${describeThrown(err)}\n`);
    process.exit(1);
  });
}
