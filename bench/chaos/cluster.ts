/**
 * One scenario's cluster, driven only through the CLI as an operator would: `shoal start` heads (the same command
 * again for a restart), `shoal deploy`, `shoal shutdown`, and the control API's GET /api/status.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { ClusterStatus } from '@shoal/head';
import type { ProcessTracker } from './procs.ts';

export type Status = ClusterStatus & { cluster?: string; http?: string };

/** A CLI flag today's code refused ("Unknown option"); the bench then runs without it and says so. */
export class FlagRefusedError extends Error {
  constructor(readonly flag: string, readonly command: string) {
    super(`\`shoal ${command}\` refused ${flag} (not implemented yet)`);
    this.name = 'FlagRefusedError';
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function tail(file: string, lines = 25): string {
  try { return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n'); } catch { return '(no log)'; }
}

function refusedFlag(text: string): string | undefined {
  return /Unknown option '(--[\w-]+)'/.exec(text)?.[1];
}

export interface ClusterOptions {
  repo: string;
  tracker: ProcessTracker;
  /** Environment of every process: the token, SHOAL_WORKER_TIMEOUT_MS, SHOAL_HEARTBEAT_MS, SHOAL_LOG_LEVEL. */
  env: NodeJS.ProcessEnv;
  token: string;
  logDir: string;
  name: string;
  /** Flags refused earlier in this run, shared by every scenario so each is tried once. */
  refused: Set<string>;
}

export interface HeadProcess {
  child: ChildProcess;
  /** Date.now() at spawn. */
  startedAt: number;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  log: string;
}

export class ChaosCluster {
  readonly port: number;
  readonly httpPort: number;
  private heads = 0;

  private constructor(private readonly o: ClusterOptions, ports: [number, number], readonly dataDir: string) {
    [this.port, this.httpPort] = ports;
  }

  static async create(o: ClusterOptions, dataDir: string): Promise<ChaosCluster> {
    return new ChaosCluster(o, [await freePort(), await freePort()], dataDir);
  }

  get address(): string { return `ws://127.0.0.1:${this.port}`; }
  get httpUrl(): string { return `http://127.0.0.1:${this.httpPort}`; }
  private get bin(): string { return join(this.o.repo, 'packages/cli/bin/shoal.mjs'); }

  /**
   * `shoal start --workers N --port P --http-port H [--data-dir DIR] [extra]`; resolves once /api/status answers.
   * --data-dir is dropped (and remembered) when the CLI refuses it; any other refused flag throws FlagRefusedError.
   */
  async startHead(workers: number, extra: string[] = [], timeoutMs = 30_000): Promise<HeadProcess> {
    for (;;) {
      const args = ['start', '--workers', String(workers), '--port', String(this.port), '--http-port', String(this.httpPort),
        ...(this.o.refused.has('--data-dir') ? [] : ['--data-dir', this.dataDir]), ...extra];
      const log = join(this.o.logDir, `${this.o.name}-head${++this.heads}.log`);
      const fd = openSync(log, 'a');
      const child = this.o.tracker.spawn(process.execPath, [this.bin, ...args], { cwd: this.o.repo, env: this.o.env, stdio: ['ignore', fd, fd], group: true });
      closeSync(fd);
      const startedAt = Date.now();
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
      let gone = false;
      void exited.then(() => { gone = true; });
      const end = startedAt + timeoutMs;
      while (!gone && Date.now() < end) {
        if (await this.status(500) !== undefined) return { child, startedAt, exited, log };
        await sleep(50);
      }
      if (!gone) { child.kill('SIGKILL'); throw new Error(`head did not answer /api/status within ${timeoutMs} ms; log:\n${tail(log)}`); }
      const flag = refusedFlag(readFileSync(log, 'utf8'));
      if (flag === '--data-dir' && !this.o.refused.has(flag)) { this.o.refused.add(flag); continue; }
      if (flag !== undefined) { this.o.refused.add(flag); throw new FlagRefusedError(flag, 'start'); }
      throw new Error(`head exited before answering /api/status; log:\n${tail(log)}`);
    }
  }

  /** GET /api/status of whatever head listens on the control port now; undefined when none answers in time. */
  async status(timeoutMs = 1000): Promise<Status | undefined> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}/api/status`, { headers: { authorization: `Bearer ${this.o.token}` }, signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) { await res.arrayBuffer(); return undefined; }
      return await res.json() as Status;
    } catch {
      return undefined;
    }
  }

  /** A `shoal` subcommand against this cluster; resolves with its exit code and output, never rejects. */
  async cli(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; out: string; refused?: string }> {
    const child = this.o.tracker.spawn(process.execPath, [this.bin, ...args], { cwd: this.o.repo, env: this.o.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => { out += `\n(killed after ${timeoutMs} ms)`; child.kill('SIGKILL'); }, timeoutMs);
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    clearTimeout(timer);
    const refused = refusedFlag(out);
    return { code, out: out.trim(), ...(refused !== undefined ? { refused } : {}) };
  }

  /** `shoal deploy FILE --address ...`, which waits for the application to be ready. */
  async deploy(file: string, extra: string[] = []): Promise<void> {
    const r = await this.cli(['deploy', file, '--address', this.address, ...extra]);
    if (r.code !== 0) throw new Error(`shoal deploy ${file} exited ${r.code}: ${r.out.split('\n').slice(-3).join(' | ')}`);
  }

  /** Polls /api/status until `cond` holds; returns the status, or undefined after timeoutMs. */
  async waitStatus(cond: (s: Status) => boolean, timeoutMs: number, everyMs = 50): Promise<Status | undefined> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const s = await this.status(1000);
      if (s !== undefined && cond(s)) return s;
      await sleep(everyMs);
    }
    return undefined;
  }

  logTail(head: HeadProcess, lines = 25): string { return tail(head.log, lines); }
}

/** Every deployment of every application has numReplicas RUNNING replicas. */
export function atFullCount(s: Status): boolean {
  return s.applications.length > 0 && s.applications.every((a) => a.deployments.every((d) => d.running === d.numReplicas && d.numReplicas > 0));
}
