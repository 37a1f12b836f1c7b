/**
 * The body of one ORT worker thread: owns one InferenceSession and runs requests one at a time, so that
 * session.run (which holds this thread's event loop for the whole inference) never stalls the main thread.
 * Started by OrtPool through OrtThreadClient; speaks thread-protocol.ts.
 */
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { BackendError, toWireError } from '@shoal/core';
import { isTensorType, type CopyRecord, type Feeds, type TensorData } from '@shoal/oip';
import { clonedOnPost, copiedForPost, prepareForTransfer } from './tensor.ts';
import { explainProviderFailure } from './ep-diagnosis.ts';
import { THREAD_PROTOCOL_VERSION, sessionConfigEntries, type FromThread, type ModelMetadata, type TensorMetadata, type ThreadInit, type ToThread } from './thread-protocol.ts';

const port = parentPort;
if (port === null) throw new Error('ort-thread.ts must run in a worker thread');
const init = workerData as ThreadInit;

function post(msg: FromThread, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(msg, transfer);
}

function readMetadata(list: readonly ort.InferenceSession.ValueMetadata[], kind: 'input' | 'output'): TensorMetadata[] {
  return list.map((m) => {
    if (!m.isTensor) throw new BackendError(`model ${kind} "${m.name}" is not a tensor; shoal's ONNX backend serves tensor ${kind}s only`);
    if (!isTensorType(m.type)) throw new BackendError(`model ${kind} "${m.name}" has element type "${m.type}", which shoal's ONNX backend does not support`);
    // ORT reports an unknown dim as -1 or a symbolic name; keep names, map anything non-positive to a name.
    const shape = m.shape.map((d, i) => (typeof d === 'number' && d >= 0 ? d : typeof d === 'string' && d !== '' ? d : `${m.name}_dim${i}`));
    return { name: m.name, type: m.type, shape };
  });
}

async function createSession(): Promise<{ session: ort.InferenceSession; provider: ThreadInit['executionProviders'][number]; fallbackReason?: string }> {
  const base: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: init.intraOpThreads,
    interOpNumThreads: init.interOpThreads,
    graphOptimizationLevel: 'all',
    extra: sessionConfigEntries(init),
  };
  const create = (opts: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> =>
    typeof init.model === 'string' ? ort.InferenceSession.create(init.model, opts) : ort.InferenceSession.create(init.model, opts);
  const wanted = init.executionProviders;
  const accel = wanted.find((p) => p !== 'cpu');
  if (accel === undefined) return { session: await create({ ...base, executionProviders: ['cpu'] }), provider: 'cpu' };
  try {
    // ORT logs its own provider-load failure at error level; we report it once, as a warning, from the main thread.
    return { session: await create({ ...base, executionProviders: wanted, logSeverityLevel: init.cpuFallback ? 4 : 2 }), provider: accel };
  } catch (err) {
    const reason = explainProviderFailure(accel, err instanceof Error ? err.message : String(err));
    if (!init.cpuFallback) throw new BackendError(`onnxruntime failed to load the model with execution provider ${accel} (cpuFallback is off): ${reason}`);
    return { session: await create({ ...base, executionProviders: ['cpu'] }), provider: 'cpu', fallbackReason: reason };
  }
}

/**
 * Lowers this thread's scheduling priority (Linux: a thread's nice value; the TID from /proc/thread-self), before
 * the session exists, so ORT's intra-op threads, which the session spawns from this thread, inherit it. The
 * worker's event loop then wins the CPU whenever both want it. Returns why it could not, or undefined.
 */
function lowerPriority(nice: number): string | undefined {
  if (nice === 0) return undefined;
  if (process.platform !== 'linux') return `thread priorities are set on Linux only (this is ${process.platform})`;
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isInteger(tid) || tid <= 0) return 'could not read this thread\'s id from /proc/thread-self';
    setPriority(tid, Math.min(19, getPriority(tid) + nice));
    return undefined;
  } catch (err) {
    return `setpriority failed: ${(err as Error).message}`;
  }
}

async function main(): Promise<void> {
  if (init.v !== THREAD_PROTOCOL_VERSION) {
    post({ kind: 'init-failed', error: toWireError(new BackendError(`ort thread speaks protocol v${THREAD_PROTOCOL_VERSION}, main thread sent v${init.v}`)) });
    return;
  }
  let session: ort.InferenceSession;
  let metadata: ModelMetadata;
  const priorityNote = lowerPriority(init.nice);
  try {
    const created = await createSession();
    session = created.session;
    metadata = { inputs: readMetadata(session.inputMetadata, 'input'), outputs: readMetadata(session.outputMetadata, 'output') };
    post({ kind: 'ready', metadata, provider: created.provider, ...(created.fallbackReason === undefined ? {} : { fallbackReason: created.fallbackReason }), ...(priorityNote === undefined ? {} : { priorityNote }) });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    post({ kind: 'init-failed', error: toWireError(err instanceof BackendError ? err : new BackendError(`onnxruntime failed to load the model: ${message}`)) });
    return;
  }

  let chain: Promise<void> = Promise.resolve();
  port!.on('message', (msg: ToThread) => {
    if (msg.kind === 'close') {
      chain = chain.then(async () => {
        await session.release();
        post({ kind: 'closed' });
        port!.close();
      });
      return;
    }
    if (msg.kind === 'exit-for-test') {
      // Chained, so the exit happens between runs: ending a thread while onnxruntime is inside run() aborts the process.
      chain = chain.then(() => process.exit(msg.code));
      return;
    }
    chain = chain.then(() => runOne(session, msg.id, msg.feeds, msg.outputs));
  });
}

async function runOne(session: ort.InferenceSession, id: number, feeds: Feeds, fetches: string[] | undefined): Promise<void> {
  try {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      ortFeeds[name] = new ort.Tensor(t.type, t.data as never, t.dims);
    }
    const results = fetches === undefined ? await session.run(ortFeeds) : await session.run(ortFeeds, fetches);
    // ort.Tensor has the fields of a TensorData; posted as plain objects, since a class instance does not clone.
    const fromOrt = results as unknown as Feeds;
    const outputs: Feeds = {};
    const copies: CopyRecord[] = [];
    for (const [name, tensor] of Object.entries(fromOrt)) {
      // onnxruntime-node 1.30 returns each CPU output in a new ArrayBuffer that it fills by memcpy from ORT's own
      // buffer (tensor_helper.cc, OrtValueToNapiValue): one copy, made before JS sees the tensor, that only
      // preallocated outputs (every output's shape known before the run) would avoid. Counted here; that the
      // binding still copies is checked in test/copies.test.ts.
      if (!Array.isArray(tensor.data)) copies.push({ path: 'output', site: 'ort.binding', bytes: tensor.data.byteLength });
      outputs[name] = { type: tensor.type, dims: [...tensor.dims], data: tensor.data } as TensorData;
    }
    const prepared = prepareForTransfer(outputs);
    // Each output should leave as the very array onnxruntime returned, transferred; any other was copied here.
    for (const bytes of copiedForPost(fromOrt, prepared.tensors)) copies.push({ path: 'output', site: 'onnx.thread-post', bytes });
    post({ kind: 'result', id, outputs: prepared.tensors, copies }, prepared.transfer);
    const cloned = clonedOnPost(prepared.tensors);
    if (cloned.length > 0) post({ kind: 'copies', copies: cloned.map((bytes) => ({ path: 'output', site: 'onnx.thread-post-clone', bytes })) });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    post({ kind: 'run-failed', id, error: toWireError(new BackendError(`onnxruntime run failed: ${message}`)) });
  }
}

void main();
