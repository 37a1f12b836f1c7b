/** Shared bench plumbing: machine description, wrk runs, tables, and bench/results/NAME.json. */
import { execFileSync, spawn } from 'node:child_process';
import { cpus, totalmem } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Goal { goal: string; value: number; target: string; unit: string; met: boolean }
export type Row = Record<string, string | number | boolean | null>;

export function machine(): string {
  const c = cpus();
  return `${c[0]?.model.trim() ?? 'unknown cpu'} x${c.length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, ${process.platform}`;
}

/**
 * Writes bench/results/NAME.json, or `file` when given (a bench's `--out`, so a smoke run does not overwrite the
 * committed results).
 */
export function writeResult(name: string, rows: Row[], goals: Goal[], extra: Record<string, unknown> = {}, file = join(dirname(fileURLToPath(import.meta.url)), 'results', `${name}.json`)): string {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify({ name, date: new Date().toISOString(), machine: machine(), rows, goals, ...extra }, null, 2)}\n`);
  return file;
}

export function printTable(rows: Row[], columns?: string[]): void {
  const cols = columns ?? [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown): string => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)) : String(v ?? ''));
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]): string => vals.map((v, i) => v.padStart(widths[i]!)).join('  ');
  process.stdout.write(`${line(cols)}\n${line(widths.map((w) => '-'.repeat(w)))}\n${rows.map((r) => line(cols.map((c) => cell(r[c])))).join('\n')}\n`);
}

export function printGoals(goals: Goal[]): void {
  for (const g of goals) process.stdout.write(`${g.met ? 'MET    ' : 'NOT MET'}  ${g.goal}: ${g.value} ${g.unit} (target ${g.target})\n`);
}

export interface WrkResult { rps: number; p50us: number; p99us: number; errors: number; requests: number }

function toUs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (m === null) throw new Error(`cannot parse wrk latency "${v}"`);
  const n = Number(m[1]);
  return m[2] === 'us' ? n : m[2] === 'ms' ? n * 1000 : n * 1e6;
}

export function hasWrk(): boolean {
  try { execFileSync('wrk', ['--version'], { stdio: 'ignore' }); return true; } catch (err) { return (err as { status?: number }).status === 1; }
}

/** Runs wrk and parses requests/s and the latency distribution. */
export async function wrk(url: string, opts: { connections: number; threads?: number; seconds: number; script?: string; headers?: Record<string, string> }): Promise<WrkResult> {
  const headers = Object.entries(opts.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
  const args = ['-t', String(opts.threads ?? 1), '-c', String(opts.connections), '-d', `${opts.seconds}s`, '--latency', ...headers, ...(opts.script ? ['-s', opts.script] : []), url];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let s = '';
    child.stdout.on('data', (d: Buffer) => { s += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { s += d.toString(); });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(s) : reject(new Error(`wrk exited ${code}: ${s}`))));
  });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = /\s50%\s+(\S+)/.exec(out)?.[1];
  const p99 = /\s99%\s+(\S+)/.exec(out)?.[1];
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = non2xx + (sock ? sock.slice(1).reduce((s, x) => s + Number(x), 0) : 0);
  if (!Number.isFinite(rps) || p50 === undefined || p99 === undefined) throw new Error(`cannot parse wrk output:\n${out}`);
  return { rps, p50us: toUs(p50), p99us: toUs(p99), errors, requests };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;
