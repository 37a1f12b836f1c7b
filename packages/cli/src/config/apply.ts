/**
 * `shoal deploy CONFIG` and `shoal run CONFIG`. Deploy diffs the file against the running cluster (diff.ts),
 * prints the diff per application and deployment, and applies only what changed: an unchanged application is not
 * sent at all; a changed one is sent whole and the head keeps every deployment whose version is the same (no
 * replica restarts; a new userConfig reaches its replicas through reconfigure()). Applications the file does not
 * list are left alone, or deleted with --prune. The steps go in the order order.ts gives (deletions first, a route
 * prefix freed before another application takes it); a step that fails ends the deploy with what was applied and
 * what was not. `--dry-run` prints the diff and the steps, and changes nothing.
 */
import type { ParseArgsConfig } from 'node:util';
import { DeployError, InvalidOptionError, moduleCodeHash, type AppSpec } from '@shoal/core';
import type { Head } from '@shoal/head';
import { control } from '../control.ts';
import { withProgress, type ProgressStatus } from '../progress.ts';
import { formatPlan, planConfig, type ConfigPlan } from './diff.ts';
import { loadConfig, type LoadedConfig } from './load.ts';
import { describeStep, formatSteps, orderSteps, type Step } from './order.ts';

/** The flags `shoal deploy CONFIG` adds to deploy's. */
export const CONFIG_DEPLOY_FLAGS = {
  'dry-run': { type: 'boolean' },
  prune: { type: 'boolean' },
} satisfies ParseArgsConfig['options'];

/** --export, --name and --route-prefix say what the file says; with a config file they are refused. */
export function refuseAppFlags(values: Record<string, unknown>): void {
  for (const [flag, field] of [['export', 'importPath (./app.ts:NAME)'], ['name', 'name'], ['route-prefix', 'routePrefix']] as const) {
    if (values[flag] !== undefined) throw new InvalidOptionError(`--${flag}`, `cannot be given with a config file: set applications[].${field} in the file`);
  }
}

/** The file's specs with the module hashes the head would compute, so versions compare as the head's do. */
async function withCodeHashes(specs: readonly AppSpec[]): Promise<AppSpec[]> {
  return Promise.all(specs.map(async (s) => ({ ...s, codeHash: await moduleCodeHash(s.modulePath) })));
}

/** Refuses a file whose route prefix an application it does not list serves (left running, it would clash). */
function checkPrefixes(loaded: LoadedConfig, running: readonly AppSpec[], plan: ConfigPlan): void {
  loaded.config.applications.forEach((a) => {
    const holder = running.find((r) => plan.notInConfig.includes(r.name) && a.routePrefix !== null && r.routePrefix === a.routePrefix);
    if (holder !== undefined) throw loaded.error(['applications', a.index, 'routePrefix'], `route prefix "${a.routePrefix}" is served by application "${holder.name}", which the file does not list (--prune deletes it)`);
  });
}


export interface DeployConfigOptions {
  address: string;
  token: string | undefined;
  /** How long to wait for each sent application to be ready. */
  waitMs: number;
  dryRun: boolean;
  prune: boolean;
}

/** `shoal deploy CONFIG`: prints the diff, then (unless dry) applies it; resolves the exit code. */
export async function deployConfig(file: string, opts: DeployConfigOptions): Promise<number> {
  const loaded = await loadConfig(file);
  const { address, token } = opts;
  const specs = await withCodeHashes(loaded.specs);
  const running = (await control(address, token, 'GET', '/api/apps') as { applications?: AppSpec[] }).applications;
  if (!Array.isArray(running)) throw new DeployError(`the head at ${address} does not answer GET /api/apps (an older head?): cannot diff the file against it`);
  const plan = planConfig(specs, running, opts.prune);
  checkPrefixes(loaded, running, plan);
  const steps = orderSteps(plan, running);
  process.stdout.write(`${opts.dryRun ? 'dry run, nothing applied: ' : ''}${file} against ${address}\n${formatPlan(plan)}`);
  if (loaded.config.http !== undefined) process.stdout.write('note: http is used by `shoal run CONFIG` only; a running head keeps its HTTP address\n');
  if (steps.length > 0) process.stdout.write(`${opts.dryRun ? 'would apply, in this order' : 'applying, in this order'}:\n${formatSteps(steps)}`);
  if (opts.dryRun) return 0;

  let http = '';
  for (const [i, step] of steps.entries()) {
    try {
      http = await applyStep(step, opts) ?? http;
    } catch (err) {
      reportFailure(steps, i, err);
      return 1;
    }
    if (step.kind === 'send') {
      const at = step.spec.routePrefix === null ? '' : ` at ${http}${step.spec.routePrefix}`;
      process.stdout.write(`application "${step.name}": ${step.change.action}, ready${at}\n`);
    } else if (step.kind === 'delete') {
      process.stdout.write(`application "${step.name}": deleted\n`);
    } else {
      process.stdout.write(`application "${step.name}": no route prefix for now ("${step.from}" is free)\n`);
    }
  }
  const count = (action: string): number => plan.applications.filter((a) => a.action === action).length;
  process.stdout.write(`applied: ${count('created')} created, ${count('updated')} updated, ${count('unchanged')} unchanged, ${plan.deleted.length} deleted\n`);
  return 0;
}

/** Sends one step to the head; the head's HTTP address when it says it. */
async function applyStep(step: Step, opts: DeployConfigOptions): Promise<string | undefined> {
  const { address, token } = opts;
  if (step.kind === 'delete') {
    await control(address, token, 'DELETE', `/api/apps/${encodeURIComponent(step.name)}`);
    return undefined;
  }
  const spec = step.spec;
  const res = await withProgress(spec.name, () => control(address, token, 'GET', '/api/status') as Promise<ProgressStatus>, 'redraw',
    () => control(address, token, 'POST', `/api/apps?wait=${opts.waitMs}`, spec)) as { http?: string };
  return res.http;
}

/** What was applied and what was not, when step `failed` did not go through (the command then exits 1). */
function reportFailure(steps: readonly Step[], failed: number, err: unknown): void {
  const message = (err as Error)?.message ?? String(err);
  process.stderr.write(`shoal: step ${failed + 1} of ${steps.length} failed: ${describeStep(steps[failed]!)}: ${message}\n`);
  const lines = [
    failed === 0 ? 'applied: nothing' : `applied:\n${formatSteps(steps.slice(0, failed))}`.trimEnd(),
    `failed:\n${formatSteps(steps.slice(failed, failed + 1), failed)}`.trimEnd(),
    failed + 1 === steps.length ? 'not applied: nothing else' : `not applied:\n${formatSteps(steps.slice(failed + 1), failed + 1)}`.trimEnd(),
  ];
  for (const p of steps.slice(0, failed)) {
    if (p.kind === 'park') lines.push(`application "${p.name}" is left with no route prefix (it had "${p.from}"): apply the file again once the failure is fixed`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** What `shoal run CONFIG` needs of main.ts's embedded head. */
export interface RunConfigOptions {
  /** The run's flags; the file's http fills --http-host and --http-port when they are not given. */
  values: Record<string, string | boolean | undefined>;
  /** A running head to deploy to instead of starting one (--address / SHOAL_ADDRESS). */
  address: string | undefined;
  token: string | undefined;
  waitMs: number;
  maxFailures: number;
  startHead(values: Record<string, string | boolean | undefined>): Promise<Head>;
  printHead(head: Head): void;
  waitReady(head: Head, app: string, timeoutMs: number, maxFailures: number): Promise<void>;
  stopAndExit(head: Head, code: number): Promise<void>;
}

/**
 * `shoal run CONFIG`: the file is loaded and checked before anything starts; then a head with local workers (or the
 * head at --address, as `shoal deploy CONFIG` would) gets every application. Resolves undefined while serving.
 */
export async function runConfig(file: string, opts: RunConfigOptions): Promise<number | undefined> {
  if (opts.address !== undefined) return deployConfig(file, { address: opts.address, token: opts.token, waitMs: opts.waitMs, dryRun: false, prune: false });
  const loaded = await loadConfig(file);
  const values = { ...opts.values };
  const http = loaded.config.http;
  if (http?.host !== undefined) values['http-host'] ??= http.host;
  if (http?.port !== undefined) values['http-port'] ??= String(http.port);
  const head = await opts.startHead(values);
  opts.printHead(head);
  try {
    for (const spec of loaded.specs) await head.deploy(spec);
    for (const spec of loaded.specs) {
      // Line by line: the local workers write their logs to this terminal too (see progress.ts).
      await withProgress(spec.name, () => head.controller.status(), 'lines', () => opts.waitReady(head, spec.name, opts.waitMs, opts.maxFailures));
    }
  } catch (err) {
    process.stderr.write(`shoal: ${(err as Error).message}\n`);
    await opts.stopAndExit(head, 1);
    return 1;
  }
  for (const spec of loaded.specs) {
    process.stdout.write(`application "${spec.name}" ready: ${spec.routePrefix === null ? '(no HTTP route)' : `${head.httpAddress}${spec.routePrefix}`}\n`);
  }
  process.stdout.write(`${loaded.specs.length} application${loaded.specs.length === 1 ? '' : 's'} from ${file} serving   (Ctrl-C stops everything)\n`);
  return undefined;
}
