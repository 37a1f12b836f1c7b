/**
 * The embedded default: the head spawns N worker processes on this machine and keeps N alive. Workers get the
 * token on stdin (not argv, which other users can read, nor the environment, which replicas could), and are
 * stopped with the head.
 *
 * HTTP: the head binds the public port once and hands the socket to every local worker over IPC, so the kernel
 * spreads connections across the workers and each answers in its own process. The head itself never accepts on
 * it; it only keeps the socket, for workers it starts later.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { DeployError, InvalidOptionError, type Logger } from '@shoal/core';
import { IPC_HTTP_SOCKET, IPC_HTTP_SOCKET_REQUEST } from '@shoal/protocol';

/** How to start one worker process: the CLI knows where the worker's entry is (the head does not import it). */
export interface WorkerCommand {
  command: string;
  args: string[];
}

export interface LocalWorkersOptions {
  count: number;
  address: string;
  token: string;
  logger: Logger;
  command: WorkerCommand;
  cpus?: number;
  /**
   * The public HTTP socket to hand to each worker: the socket, or a promise of it (a restarted head whose port is
   * still held by the workers it adopted binds it once they are gone). @default none (workers serve no HTTP)
   */
  http?: SharedListenSocket | Promise<SharedListenSocket>;
  /** Called when a worker process exits, before any replacement is started (the head declares it dead at once). */
  onExit?: (pid: number | undefined) => void;
}


/** A bound listening socket that this process holds without accepting on it. */
export interface SharedListenSocket {
  /** The libuv TCP handle, as child_process.send() passes it. */
  readonly handle: object;
  readonly host: string;
  readonly port: number;
  close(): void;
}

interface TcpHandle { getsockname(out: { port?: number }): number; close(): void }
type CreateServerHandle = (address: string, port: number, addressType: number, fd?: number, flags?: number) => TcpHandle | number;

/**
 * Binds host:port for workers to listen on. Node's cluster module does the same (bind here, listen in each
 * worker) through net's internal _createServerHandle, which this uses too: a public net.Server would start
 * accepting in the head, which must stay off the data path.
 */
export function bindSharedSocket(host: string, port: number): SharedListenSocket {
  const create = (net as unknown as { _createServerHandle?: CreateServerHandle })._createServerHandle;
  if (typeof create !== 'function') throw new DeployError(`this Node.js (${process.version}) has no net._createServerHandle; run the head with --workers 0 and workers with --http-port`);
  const family = net.isIPv6(host) ? 6 : 4;
  const h = create(host, port, family);
  if (typeof h === 'number') {
    const code = h === -98 ? 'EADDRINUSE' : h === -13 ? 'EACCES' : `errno ${h}`;
    throw new InvalidOptionError('httpPort', `cannot bind ${host}:${port}: ${code}`, port);
  }
  const out: { port?: number } = {};
  h.getsockname(out);
  return { handle: h, host, port: out.port ?? port, close: () => h.close() };
}

export class LocalWorkers {
  private readonly children = new Set<ChildProcess>();
  /** Every pid spawned here, so a worker declared dead after its exit is not replaced twice. */
  private readonly spawned = new Set<number>();
  private stopping = false;
  /** Set by detach(): the head goes, its workers stay, and nothing is respawned. */
  private detached = false;

  constructor(private readonly opts: LocalWorkersOptions) {}

  /** Starts `count` workers, less `adopted` ones already running (a restarted head's, which came back to it). */
  start(adopted = 0): void {
    for (let i = adopted; i < this.opts.count; i++) this.spawnOne(i);
  }

  /** Starts one more worker in place of one that was not this head's child (an adopted worker that died). */
  replace(): void {
    if (!this.stopping) this.spawnOne(this.children.size);
  }

  pids(): number[] {
    return [...this.children].map((c) => c.pid).filter((p): p is number => p !== undefined);
  }

  /** Ends a worker process at once (one declared dead: stopped, cut off); its exit starts a replacement. */
  kill(pid: number): boolean {
    for (const c of this.children) if (c.pid === pid) return c.kill('SIGKILL');
    return false;
  }

  /** Whether this process spawned `pid` (alive or not): its exit, not the caller, starts the replacement. */
  owns(pid: number): boolean {
    return this.spawned.has(pid);
  }

  private spawnOne(index: number): void {
    const { command, args } = this.opts.command;
    const http = this.opts.http;
    const argv = [...args, '--address', this.opts.address, ...(this.opts.cpus ? ['--cpus', String(this.opts.cpus)] : []), ...(http ? ['--http-from-parent'] : []), '--local'];
    // The token goes down stdin, read once as --token-file -: not in argv (ps shows it) nor in the environment
    // (replicas, and /proc/PID/environ, would).
    const { SHOAL_TOKEN: _drop, ...envWithoutToken } = process.env;
    const child = spawn(command, [...argv, '--token-file', '-'], { env: envWithoutToken, stdio: ['pipe', 'inherit', 'inherit', 'ipc'] });
    child.stdin?.on('error', () => undefined); // a worker that died at once: its exit is handled below
    child.stdin?.end(`${this.opts.token}\n`);
    this.children.add(child);
    if (child.pid !== undefined) this.spawned.add(child.pid);
    this.opts.logger.info('spawned local worker', { index, pid: child.pid });
    child.on('message', (m: unknown) => {
      if (m !== IPC_HTTP_SOCKET_REQUEST || http === undefined || !child.connected) return;
      void Promise.resolve(http).then((socket) => {
        if (!child.connected) return;
        child.send(IPC_HTTP_SOCKET, socket.handle as net.Server, (err) => {
          if (err) this.opts.logger.warn('could not hand the HTTP socket to a local worker', { pid: child.pid, error: err.message });
        });
      }, () => undefined);
    });
    // The IPC channel must not keep the head alive, nor its errors (a worker that died mid-send) crash it.
    child.on('error', (err) => this.opts.logger.warn('local worker process error', { pid: child.pid, error: err.message }));
    child.channel?.unref();
    child.once('exit', (code, signal) => {
      this.children.delete(child);
      if (this.stopping || this.detached) return;
      this.opts.onExit?.(child.pid);
      this.opts.logger.warn('local worker exited; starting another', { pid: child.pid, code, signal });
      setTimeout(() => { if (!this.stopping) this.spawnOne(index); }, 500).unref();
    });
  }

  /** Leaves the workers running (a head restart: the next head adopts them), and stops watching them. */
  detach(): void {
    this.detached = true;
    for (const c of this.children) { c.removeAllListeners('message'); if (c.connected) c.disconnect(); }
  }

  /** SIGTERM (each worker drains, up to its drainTimeoutMs, 10 s), then SIGKILL after timeoutMs; resolves when every child has exited. */
  async stop(timeoutMs = 12_000): Promise<void> {
    this.stopping = true;
    const waits = [...this.children].map((c) => new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null) { resolve(); return; }
      c.once('exit', () => resolve());
      c.kill('SIGTERM');
      setTimeout(() => { if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL'); }, timeoutMs).unref();
    }));
    await Promise.all(waits);
  }
}
