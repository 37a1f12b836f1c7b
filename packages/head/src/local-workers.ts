/**
 * The embedded default: the head spawns N worker processes on this machine and keeps N alive. Workers get the
 * token through the environment (not argv, which other users can read), and are stopped with the head.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '@shoal/core';

export interface LocalWorkersOptions {
  count: number;
  address: string;
  token: string;
  logger: Logger;
  cpus?: number;
}

/** `node --import tsx <worker main>`: workers import TypeScript app modules without a build step. */
export function workerCommand(): { command: string; args: string[] } {
  const tsx = import.meta.resolve('tsx');
  const main = new URL('../../worker/src/main.ts', import.meta.url);
  return { command: process.execPath, args: ['--import', tsx, main.pathname] };
}

export class LocalWorkers {
  private readonly children = new Set<ChildProcess>();
  private stopping = false;

  constructor(private readonly opts: LocalWorkersOptions) {}

  start(): void {
    for (let i = 0; i < this.opts.count; i++) this.spawnOne(i);
  }

  pids(): number[] {
    return [...this.children].map((c) => c.pid).filter((p): p is number => p !== undefined);
  }

  private spawnOne(index: number): void {
    const { command, args } = workerCommand();
    const argv = [...args, '--address', this.opts.address, ...(this.opts.cpus ? ['--cpus', String(this.opts.cpus)] : [])];
    const child = spawn(command, argv, { env: { ...process.env, SHOAL_TOKEN: this.opts.token }, stdio: ['ignore', 'inherit', 'inherit'] });
    this.children.add(child);
    this.opts.logger.info('spawned local worker', { index, pid: child.pid });
    child.once('exit', (code, signal) => {
      this.children.delete(child);
      if (this.stopping) return;
      this.opts.logger.warn('local worker exited; starting another', { pid: child.pid, code, signal });
      setTimeout(() => { if (!this.stopping) this.spawnOne(index); }, 500).unref();
    });
  }

  /** SIGTERM, then SIGKILL after timeoutMs; resolves when every child has exited. */
  async stop(timeoutMs = 5000): Promise<void> {
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
