/**
 * `shoal start | worker | run | serve | deploy | status | shutdown`. Every command that reaches a running head presents the
 * cluster token (--token-file PATH, SHOAL_TOKEN, or --token, which `ps` shows to every user); `shoal start` and
 * `shoal run` generate one when none is given and print it. A port that cannot be listened on is one line naming
 * the flag that chooses it.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { resolve, basename } from 'node:path';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { cpus as osCpus, homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DeployError, applyTracingFlags, buildAppSpec, createLogger, type Logger, startTracing, stopTracing, tracingFromEnv, describeThrown, env, InvalidOptionError, type AppSpec } from '@shoal/core';
import { FileStateStore, Head, RedisStateStore, StoreLockedError, type ClusterStatus, type ExperimentReport, type StateStore, type WorkerCommand, formatExperimentReport } from '@shoal/head';
import { isListenError, portError, resolveToken } from '@shoal/protocol';
import { runWorker, WORKER_ENTRY } from '@shoal/worker/main';
import { registerTypeScript } from '@shoal/worker';
import { serveRepository } from './serve.ts';
import { control, controlUrl } from './control.ts';
import { batchCommand } from './batch/command.ts';
import { LOGS_FLAGS, logsPath, printLogs } from './logs.ts';
import { CONFIG_DEPLOY_FLAGS, deployConfig, refuseAppFlags, runConfig } from './config/apply.ts';
import { configCommand } from './config/generate.ts';
import { isConfigFile } from './config/schema.ts';
import { deploymentSettled, followProgress, formatBytes, loadFraction, withProgress, type ProgressStatus } from './progress.ts';

const USAGE = `usage: shoal <command> [options]

commands:
  start                 run a head: controller, cluster endpoint, HTTP ingress (and --workers local workers)
  worker                join a head as a worker: --address ws://HOST:PORT --token-file PATH
  run APP.ts            start a head (or use --address), deploy the module's application, serve until Ctrl-C
  serve DIR             start a head and serve a model repository (DIR/MODEL/VERSION/model.onnx) over KServe v2 at /v2
  deploy APP.ts         deploy an application to a running head
  run CONFIG.yaml       the same for every application of a config file (docs/config.md): import paths, route
                        prefixes, deployment options; .yaml, .yml or .json
  deploy CONFIG.yaml    apply a config file to a running head: prints per application and deployment what changes
                        (created, updated: fields, unchanged, deleted) and rolls out only that
  config generate APP.ts  write a config file from an application's code (-o FILE, --force; --export, --name, --route-prefix)
  status                applications, deployments (versions, rollouts and their decisions), traffic, SLOs and
                        cost per 1,000 requests (docs/slo.md), replicas and workers
  rollback APP/DEP      return a deployment to its previous version (a rollout in progress: its stable version)
  promote APP/DEP       end a shadow, canary or experiment early: the new version rolls out to the full count
  experiment [NAME]     an A/B experiment's report: counts, rates or means, intervals, p-values, verdicts
  batch APP/DEP         run a JSON-lines file through a deployment at full batch: --input IN --output OUT,
                        progress, resumable after Ctrl-C (docs/batch.md; shoal batch --help)
  logs                  recent log records of the head and every worker, merged by time (--follow: and new ones)
  shutdown              stop a running head and its local workers

common options:
  --address ws://HOST:PORT   a running head (default $SHOAL_ADDRESS)
  --token-file PATH          a file holding the cluster token (default $SHOAL_TOKEN); --token TOKEN also works,
                             but every user of the machine sees it in \`ps\`
start/run options:
  --host 127.0.0.1  --port 7450      cluster endpoint and control API
  --http-host 127.0.0.1 --http-port 8000   HTTP ingress
  --workers N                         local worker processes (default 2)
  --warm-spares N                     extra local workers kept idle, to take over at once from one that dies (default 0)
  --data-dir DIR                      where the head keeps its state (applications, workers last seen), so a head
                                      restarted on it adopts the running workers (shoal start: ~/.shoal/head-PORT;
                                      shoal run and serve, or --port 0: a fresh temporary directory)
  --store redis://HOST:PORT[/DB]      keep the state in Redis instead (--store-prefix shoal:), e.g. for a standby head
  --standby                           when another head holds the store, wait and take over when it goes
  --on-sigterm keep-workers|stop      what SIGTERM does (what Kubernetes sends a pod it replaces): keep-workers stops
                                      only the head, its workers serve on and rejoin the next head on the store
                                      (as shutdown --keep-workers); stop drains and stops the head and its local
                                      workers. Default: keep-workers with --workers 0 and a lasting store (a
                                      --data-dir or --store), else stop. Ctrl-C and SIGHUP always stop
  --price-core-hour P  --price-device-hour P   prices per core-hour and device-hour (default $SHOAL_PRICE_CORE_HOUR,
                                      $SHOAL_PRICE_DEVICE_HOUR): status then shows cost per 1,000 requests
  --otlp-endpoint URL                 export OpenTelemetry spans over OTLP/HTTP (e.g. http://localhost:4318/v1/traces);
                                      local workers inherit it (also $SHOAL_OTLP_ENDPOINT, $OTEL_EXPORTER_OTLP_ENDPOINT)
  --trace-sample-ratio R              share of new traces recorded, 0..1 (default 1); a traceparent's flag wins
run options:
  --max-start-failures N              give up (exit 1) when a deployment fails to start N times in a row (default 5)
logs options:
  -f, --follow                        keep printing new records until Ctrl-C
  --deployment APP/DEP or DEP         records logged inside that deployment's replicas; --app A: that application's
  --since 10m|2h|ISO-TIME             records from then on   --level debug|info|warn|error: that level and above
  --limit N                           the most recent N (default 1000, at most 10000)   --json: the JSON lines as they are
shutdown options:
  --keep-workers                      stop only the head: workers keep serving and rejoin the next head on the store
worker options:
  --data-port 0  --http-port P  --http-host 127.0.0.1   data port for other workers (0: any), HTTP ingress
  --otlp-endpoint URL  --trace-sample-ratio R          export spans over OTLP/HTTP (as for start; docs/tracing.md)
run/deploy options:
  --export NAME (default: default)  --name APP (default: default)  --route-prefix /PATH (default: /)
  --wait MS                           how long to wait for the application to be ready (default 120000); on a
                                      terminal, progress shows meanwhile: replicas ready, rollout, model load
deploy CONFIG.yaml options:
  --dry-run                           print what would change against the running cluster, and in which order;
                                      change nothing
  --prune                             delete running applications the file does not list, first (else left
                                      alone, listed)
rollback/promote options:
  --wait MS                           on a terminal, show the rollout's progress until it has played out, at most MS
                                      (default 120000); elsewhere the command returns once the head has the order
serve options:
  --load all|none                     load every model at start, or only on POST /v2/repository/models/M/load (default all)
`;

const headFlags = {
  host: { type: 'string' },
  port: { type: 'string' },
  'http-host': { type: 'string' },
  'http-port': { type: 'string' },
  workers: { type: 'string' },
  'warm-spares': { type: 'string' },
  'data-dir': { type: 'string' },
  store: { type: 'string' },
  'store-prefix': { type: 'string' },
  standby: { type: 'boolean' },
  'on-sigterm': { type: 'string' },
  'price-core-hour': { type: 'string' },
  'price-device-hour': { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  'otlp-endpoint': { type: 'string' },
  'trace-sample-ratio': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

/** The head's state store from --store / --data-dir (see USAGE). */
function storeOf(values: Record<string, string | boolean | undefined>, port: number, durable: boolean): { store: StateStore; dir?: string } {
  const logger = createLogger('state-store');
  const url = values.store as string | undefined;
  if (url !== undefined) {
    if (!/^rediss?:\/\//.test(url)) throw new InvalidOptionError('--store', 'must be a redis:// or rediss:// URL (or leave it out for the file under --data-dir)', url);
    if (values['data-dir'] !== undefined) throw new InvalidOptionError('--data-dir', 'cannot be combined with --store');
    return { store: new RedisStateStore({ url, ...(values['store-prefix'] ? { prefix: values['store-prefix'] as string } : {}), logger }) };
  }
  // With --port 0 no restarted head could be found by the workers anyway, and `shoal run` / `shoal serve` are a
  // development loop whose applications come from the command line: unless --data-dir says otherwise, their
  // state is this run's only. `shoal start` keeps its state across restarts.
  let dir = values['data-dir'] as string | undefined;
  if (dir === undefined && (!durable || port === 0)) dir = ephemeralDir = mkdtempSync(join(tmpdir(), 'shoal-head-'));
  dir ??= join(homedir(), '.shoal', `head-${port}`);
  return { store: new FileStateStore(dir, { logger }), dir };
}

/**
 * A generated token is kept in the data directory (mode 0600), so a head restarted on it has the token its
 * workers hold; one given by the operator is used as it is and never written.
 */
function dataDirToken(dir: string): string {
  const file = join(dir, 'token');
  if (existsSync(file)) {
    const t = readFileSync(file, 'utf8').trim();
    if (t !== '') return t;
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const t = randomBytes(24).toString('base64url');
  writeFileSync(file, `${t}\n`, { mode: 0o600 });
  return t;
}

const tokenFlags = {
  token: { type: 'string' },
  'token-file': { type: 'string' },
} satisfies ParseArgsConfig['options'];

/** The token from --token, --token-file or SHOAL_TOKEN; undefined when none is given. */
function tokenOf(values: { token?: string | boolean | undefined; 'token-file'?: string | boolean | undefined }): string | undefined {
  return resolveToken(
    { token: values.token as string | undefined, tokenFile: values['token-file'] as string | undefined },
    (m) => process.stderr.write(`shoal: warning: ${m}\n`),
  );
}

const appFlags = {
  export: { type: 'string' },
  name: { type: 'string' },
  'route-prefix': { type: 'string' },
  address: { type: 'string' },
  wait: { type: 'string' },
  'max-start-failures': { type: 'string' },
} satisfies ParseArgsConfig['options'];

/** The sections of USAGE each command's --help shows after its own lines (batch and config have their own help). */
const COMMAND_OPTIONS: Record<string, readonly string[]> = {
  start: ['common options', 'start/run options'],
  worker: ['common options', 'worker options'],
  run: ['common options', 'start/run options', 'run options', 'run/deploy options'],
  serve: ['common options', 'start/run options', 'serve options'],
  deploy: ['common options', 'run/deploy options', 'deploy CONFIG.yaml options'],
  status: ['common options'],
  rollback: ['common options', 'rollback/promote options'],
  promote: ['common options', 'rollback/promote options'],
  experiment: ['common options'],
  logs: ['common options', 'logs options'],
  shutdown: ['common options', 'shutdown options'],
};

/** `shoal COMMAND --help`: the command's lines of USAGE and the option sections that apply to it. */
export function commandUsage(command: string): string {
  const sections = new Map<string, string[]>();
  let current: string[] = [];
  for (const line of USAGE.split('\n')) {
    if (/^[a-z].*:$/.test(line)) sections.set(line.slice(0, -1), current = []);
    else current.push(line);
  }
  const own: string[] = [];
  let mine = false;
  for (const line of sections.get('commands') ?? []) {
    const entry = /^ {2}(\S+)/.exec(line);
    if (entry !== null) mine = entry[1] === command;
    if (mine && line.trim() !== '') own.push(line);
  }
  const options = (COMMAND_OPTIONS[command] ?? []).map((name) => `${name}:\n${(sections.get(name) ?? []).filter((l) => l.trim() !== '').join('\n')}`);
  return `usage: shoal ${command} [options]\n${own.join('\n')}\n\n${options.join('\n')}\n`;
}

/** Whether the arguments ask for help (before a `--`, after which everything is an operand). */
function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/** Exit code for a command; a thrown error prints its message and exits 1. */
export async function main(argv: string[]): Promise<number | undefined> {
  const [command, ...rest] = argv;
  if (command !== undefined && Object.hasOwn(COMMAND_OPTIONS, command) && wantsHelp(rest)) {
    process.stdout.write(commandUsage(command));
    return 0;
  }
  switch (command) {
    case undefined: case '-h': case '--help': case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    case 'start': return start(rest);
    case 'worker': await runWorker(rest); return undefined;
    case 'run': return run(rest);
    case 'serve': return serve(rest);
    case 'deploy': return deploy(rest);
    case 'config': return configCommand(rest);
    case 'status': return status(rest);
    case 'rollback': return deploymentAction('rollback', rest);
    case 'promote': return deploymentAction('promote', rest);
    case 'experiment': return experiment(rest);
    case 'batch': return batchCommand(rest);
    case 'logs': return logs(rest);
    case 'shutdown': return shutdown(rest);
    default:
      process.stderr.write(`shoal: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

function intFlag(name: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new InvalidOptionError(`--${name}`, `must be an integer >= ${min}`, raw);
  return n;
}

/** --price-core-hour / --price-device-hour, else SHOAL_PRICE_CORE_HOUR / SHOAL_PRICE_DEVICE_HOUR (docs/slo.md). */
function pricesOf(values: Record<string, string | boolean | undefined>): { coreHour?: number; deviceHour?: number } {
  const flag = (name: string): number | undefined => {
    const raw = values[name] as string | undefined;
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidOptionError(`--${name}`, 'must be a non-negative number (a price per hour)', raw);
    return n;
  };
  const coreHour = flag('price-core-hour') ?? env.priceCoreHour();
  const deviceHour = flag('price-device-hour') ?? env.priceDeviceHour();
  return { ...(coreHour !== undefined ? { coreHour } : {}), ...(deviceHour !== undefined ? { deviceHour } : {}) };
}

/**
 * How the head starts a local worker: this Node on the worker's compiled entry (dist/main.js; it registers tsx
 * itself when an app module is TypeScript). From a source checkout (vitest imports src/), the compiled entry next
 * to the sources is used once built; SHOAL_WORKER_FROM_SOURCE=1, or no build, runs the sources through tsx.
 */
export function localWorkerCommand(): WorkerCommand {
  const compiled = WORKER_ENTRY.endsWith('.ts') ? WORKER_ENTRY.replace(/([\\/])src([\\/])main\.ts$/, '$1dist$2main.js') : WORKER_ENTRY;
  const fromSource = process.env.SHOAL_WORKER_FROM_SOURCE === '1' || !existsSync(compiled);
  if (!fromSource) return { command: process.execPath, args: [compiled] };
  const sourceEntry = WORKER_ENTRY.endsWith('.ts') ? WORKER_ENTRY : WORKER_ENTRY.replace(/([\\/])dist([\\/])main\.js$/, '$1src$2main.ts');
  return { command: process.execPath, args: ['--conditions=source', '--import', import.meta.resolve('tsx'), sourceEntry] };
}

/** Starts a head with the given token (a generated one when undefined). */
async function startHead(values: Record<string, string | boolean | undefined>, defaultWorkers: number, token: string | undefined, durable = false): Promise<Head> {
  const workers = intFlag('workers', values.workers as string | undefined, defaultWorkers, 0);
  const prices = pricesOf(values);
  const logger = createLogger('head');
  let head: Head | undefined;
  const host = (values.host as string | undefined) ?? '127.0.0.1';
  const port = intFlag('port', values.port as string | undefined, 7450, 0);
  const httpHost = (values['http-host'] as string | undefined) ?? '127.0.0.1';
  const httpPort = intFlag('http-port', values['http-port'] as string | undefined, 8000, 0);
  const { store, dir } = storeOf(values, port, durable);
  let onSigterm: SigtermMode;
  try {
    onSigterm = sigtermModeOf(values['on-sigterm'] as string | undefined, workers, dir !== undefined && dir === ephemeralDir);
  } catch (err) {
    if (ephemeralDir !== undefined) rmSync(ephemeralDir, { recursive: true, force: true });
    throw err;
  }
  if (token === undefined && dir !== undefined) token = dataDirToken(dir);
  const spares = intFlag('warm-spares', values['warm-spares'] as string | undefined, 0, 0);
  await startProcessTracing(values, logger);
  head = new Head({
    ...(token !== undefined ? { token } : {}),
    host,
    port,
    httpHost,
    httpPort,
    workers,
    spareWorkers: spares,
    store,
    standby: values.standby === true,
    workerCommand: localWorkerCommand(),
    workerCpus: osCpus().length,
    logger,
    heartbeatMs: env.heartbeatMs(),
    workerTimeoutMs: env.workerTimeoutMs(),
    maxFrameBytes: env.maxFrameBytes(),
    prices,
    onShutdownRequest: ({ keepWorkers }) => { void stopAndExit(head!, 0, keepWorkers); },
    onLeaseLost: (err) => { process.stderr.write(`shoal: ${err.message}; this head stops\n`); void stopAndExit(head!, 1, true); },
  });
  try {
    // The head binds the HTTP socket its local workers serve on (a busy one fails head.start with httpPort), unless
    // the workers of a previous head on the same store still hold it: then they keep serving, and it adopts them.
    await head.start();
  } catch (err) {
    // Its message names the holder and the remedies (stop it, or --standby); another --data-dir or --store is the third.
    if (err instanceof StoreLockedError) throw new DeployError(`${err.message} (--standby), or give this head its own ${values.store !== undefined ? '--store-prefix' : '--data-dir'}`);
    throw busyPortError(err, head, { host, port, httpHost, httpPort }) ?? err;
  }
  installSignalHandlers(head, onSigterm);
  return head;
}

type SigtermMode = 'keep-workers' | 'stop';

/**
 * --on-sigterm (see USAGE). Only the workers a next head can find are worth keeping: with a temporary data
 * directory (shoal run, serve, --port 0) no head will ever open this one's state again.
 */
function sigtermModeOf(raw: string | undefined, workers: number, ephemeral: boolean): SigtermMode {
  if (raw === undefined) return workers === 0 && !ephemeral ? 'keep-workers' : 'stop';
  if (raw !== 'keep-workers' && raw !== 'stop') throw new InvalidOptionError('--on-sigterm', 'must be keep-workers or stop', raw);
  if (raw === 'keep-workers' && ephemeral) {
    throw new InvalidOptionError('--on-sigterm', 'keep-workers needs a state store a next head can open (--data-dir or --store): this head keeps its state in a temporary directory', raw);
  }
  return raw;
}

/**
 * The one-line error naming --port or --http-port for a head that could not listen; undefined for other errors.
 * The cluster port is listened on first: once the head has its address, a failed listen was the HTTP port.
 */
function busyPortError(err: unknown, head: Head, at: { host: string; port: number; httpHost: string; httpPort: number }): Error | undefined {
  const httpFailed = head.clusterAddress !== '';
  // The shared HTTP socket of local workers is bound by the head itself and reports as option httpPort.
  if (err instanceof InvalidOptionError && err.details?.path === 'httpPort') {
    const code = /already in use/.test(err.message) ? 'EADDRINUSE' : /\b(E[A-Z]+)\b/.exec(err.message)?.[1] ?? 'error';
    return portError('--http-port', at.httpHost, at.httpPort, code);
  }
  if (!isListenError(err)) return undefined;
  const code = String((err as NodeJS.ErrnoException).code);
  return httpFailed ? portError('--http-port', at.httpHost, at.httpPort, code) : portError('--port', at.host, at.port, code);
}

/**
 * --otlp-endpoint / --trace-sample-ratio (or SHOAL_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT): set in
 * this process's environment, which the local workers inherit, and spans of this head's own router and ingress.
 */
async function startProcessTracing(values: Record<string, string | boolean | undefined>, logger: Logger): Promise<void> {
  applyTracingFlags(values['otlp-endpoint'] as string | undefined, values['trace-sample-ratio'] as string | undefined);
  const opts = tracingFromEnv('shoal-head', { 'shoal.role': 'head', 'process.pid': String(process.pid) });
  if (opts !== undefined) await startTracing(opts, (msg, fields) => logger.warn(msg, fields));
}

let exiting = false;
/** A data directory made for this run only: removed when the head stops with its workers. */
let ephemeralDir: string | undefined;
/** Stops the head (draining its local workers, unless `keepWorkers`: a restart) and exits with `code`. */
async function stopAndExit(head: Head, code: number, keepWorkers = false): Promise<void> {
  if (exiting) return;
  exiting = true;
  process.stderr.write(keepWorkers ? 'shoal: stopping the head; its workers keep serving\n' : 'shoal: stopping head and local workers (draining)\n');
  // Workers drain for up to 10 s and are killed 12 s after SIGTERM; past that something is stuck.
  const force = setTimeout(() => process.exit(code), 15_000);
  force.unref();
  try {
    await head.stop({ keepWorkers });
    if (!keepWorkers && ephemeralDir !== undefined) rmSync(ephemeralDir, { recursive: true, force: true });
    await stopTracing().catch(() => undefined);
  } finally {
    process.exit(code);
  }
}

/**
 * SIGTERM is the orderly stop (exit 0): of the head and its local workers (drained), or with keep-workers of the
 * head only; Ctrl-C and SIGHUP stop both, with their conventional codes.
 */
function installSignalHandlers(head: Head, onSigterm: SigtermMode): void {
  // A promise no code awaited is logged, not fatal: the head's loop and its workers go on. (A thrown exception
  // still ends the process; its workers keep serving and a restarted head adopts them.)
  process.on('unhandledRejection', (reason: unknown) => {
    process.stderr.write(`shoal: unhandled promise rejection in the head (going on): ${describeThrown(reason)}\n`);
  });
  process.once('SIGINT', () => { void stopAndExit(head, 130); });
  process.once('SIGTERM', () => { void stopAndExit(head, 0, onSigterm === 'keep-workers'); });
  process.once('SIGHUP', () => { void stopAndExit(head, 129); });
}

function printHead(head: Head, tokenGiven: boolean): void {
  process.stdout.write([
    `shoal head running`,
    `  cluster:  ${head.clusterAddress}   (workers: shoal worker --address ${head.clusterAddress})`,
    `  http:     ${head.httpAddress}`,
    `  dashboard: ${head.dashboardUrl(!tokenGiven)}${tokenGiven ? '?token=<the token>' : ''}`,
    tokenGiven ? `  token:    (as given)` : `  token:    ${head.token}   (export SHOAL_TOKEN=${head.token})`,
    '',
  ].join('\n'));
}

async function start(argv: string[]): Promise<number | undefined> {
  const { values } = parseArgs({ args: argv, options: headFlags, allowPositionals: false });
  if (values.help) { process.stdout.write(USAGE); return 0; }
  const token = tokenOf(values);
  const head = await startHead(values, 2, token, true);
  printHead(head, token !== undefined);
  return undefined; // keeps serving until a signal or `shoal shutdown`
}

/** Imports an app module (TypeScript is fine: tsx is registered first) and builds the spec the head deploys. */
export async function loadAppSpec(file: string, opts: { exportName?: string; name?: string; routePrefix?: string }): Promise<AppSpec> {
  const modulePath = resolve(file);
  if (!existsSync(modulePath)) throw new InvalidOptionError('APP', 'no such file', file);
  const url = pathToFileURL(modulePath).href;
  await registerTypeScript(url);
  const mod = await import(url) as Record<string, unknown>;
  const exportName = opts.exportName ?? 'default';
  if (!(exportName in mod)) {
    throw new InvalidOptionError('--export', `${basename(file)} has no export "${exportName}" (exports: ${Object.keys(mod).join(', ') || 'none'})`);
  }
  return buildAppSpec(mod[exportName] as never, { name: opts.name ?? 'default', routePrefix: opts.routePrefix ?? '/', modulePath, exportName });
}

async function run(argv: string[]): Promise<number | undefined> {
  const { values, positionals } = parseArgs({ args: argv, options: { ...headFlags, ...appFlags }, allowPositionals: true });
  if (values.help) { process.stdout.write(USAGE); return 0; }
  const file = positionals[0];
  if (file === undefined) throw new InvalidOptionError('APP', 'shoal run needs an application file, e.g. shoal run examples/hello/app.ts');
  if (isConfigFile(file)) {
    refuseAppFlags(values);
    const token = tokenOf(values);
    return runConfig(file, {
      values, address: values.address ?? env.address(), token, waitMs: intFlag('wait', values.wait, 120_000, 0),
      maxFailures: intFlag('max-start-failures', values['max-start-failures'] as string | undefined, 5, 1),
      startHead: (v) => startHead(v, 2, token), printHead: (h) => printHead(h, token !== undefined), waitReady: waitReadyOrFailing, stopAndExit,
    });
  }
  const spec = await loadAppSpec(file, { ...(values.export ? { exportName: values.export } : {}), ...(values.name ? { name: values.name } : {}), ...(values['route-prefix'] ? { routePrefix: values['route-prefix'] } : {}) });
  const address = values.address ?? env.address();
  const token = tokenOf(values);
  if (address !== undefined) {
    const res = await withProgress(spec.name, () => control(address, token, 'GET', '/api/status') as Promise<ProgressStatus>, 'redraw',
      () => control(address, token, 'POST', `/api/apps?wait=${intFlag('wait', values.wait, 120_000, 0)}`, spec));
    process.stdout.write(`deployed "${spec.name}" to ${address}; serving at ${String((res as { http?: string }).http ?? '')}${spec.routePrefix ?? ''}\n`);
    return 0;
  }
  const maxFailures = intFlag('max-start-failures', values['max-start-failures'] as string | undefined, 5, 1);
  const head = await startHead(values, 2, token);
  printHead(head, token !== undefined);
  try {
    // Line by line: the local workers write their logs to this terminal too (see progress.ts).
    await withProgress(spec.name, () => head.controller.status(), 'lines', async () => {
      await head.deploy(spec);
      await waitReadyOrFailing(head, spec.name, intFlag('wait', values.wait, 120_000, 0), maxFailures);
    });
  } catch (err) {
    process.stderr.write(`shoal: ${(err as Error).message}\n`);
    await stopAndExit(head, 1);
    return 1;
  }
  const prefix = spec.routePrefix === '/' ? '/' : `${spec.routePrefix ?? ''}`;
  process.stdout.write(`application "${spec.name}" ready: ${head.httpAddress}${prefix}   (Ctrl-C stops everything)\n`);
  return undefined;
}

/**
 * Waits for the application, giving up (with the deployment's last start error) once one of its deployments has
 * failed to start `maxFailures` times in a row: a constructor that always throws is not worth the whole wait.
 */
async function waitReadyOrFailing(head: Head, app: string, timeoutMs: number, maxFailures: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!head.controller.isReady(app)) {
    const st = head.controller.status().applications.find((a) => a.name === app);
    const failing = st?.deployments.find((d) => d.failures >= maxFailures);
    if (failing !== undefined) throw new DeployError(`deployment "${failing.name}" of "${app}" failed to start ${failing.failures} times in a row (--max-start-failures ${maxFailures}): ${failing.lastError ?? failing.message}`);
    if (Date.now() > end) { await head.waitReady(app, 0); return; }
    await new Promise((r) => setTimeout(r, 50));
  }
}


async function serve(argv: string[]): Promise<number | undefined> {
  const { values, positionals } = parseArgs({ args: argv, options: { ...headFlags, load: { type: 'string' }, wait: { type: 'string' } }, allowPositionals: true });
  if (values.help) { process.stdout.write(USAGE); return 0; }
  const dir = positionals[0];
  if (dir === undefined) throw new InvalidOptionError('DIR', 'shoal serve needs a model repository directory, e.g. shoal serve models/');
  const root = resolve(dir);
  if (!existsSync(root)) throw new InvalidOptionError('DIR', 'no such directory', dir);
  const load = values.load ?? 'all';
  if (load !== 'all' && load !== 'none') throw new InvalidOptionError('--load', 'must be "all" or "none"', load);
  const token = tokenOf(values);
  const head = await startHead(values, 2, token);
  printHead(head, token !== undefined);
  await head.waitForWorkers(1);
  const { loaded, failed } = await serveRepository(head, root, { loadAll: load === 'all', loadTimeoutMs: intFlag('wait', values.wait, 120_000, 1) });
  for (const f of failed) process.stderr.write(`shoal: model "${f.name}" is UNAVAILABLE: ${f.error}\n`);
  process.stdout.write(`model repository ${root} served: ${head.httpAddress}/v2   (models ready: ${loaded.join(', ') || 'none'}; Ctrl-C stops everything)\n`);
  return undefined;
}

export { control };

function requireAddress(flag: string | undefined): string {
  const a = flag ?? env.address();
  if (a === undefined) throw new InvalidOptionError('--address', 'is required (ws://HOST:PORT of the head), or set SHOAL_ADDRESS');
  return a;
}

async function deploy(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { ...appFlags, ...tokenFlags, ...CONFIG_DEPLOY_FLAGS }, allowPositionals: true });
  const address = requireAddress(values.address);
  const file = positionals[0];
  if (file === undefined) throw new InvalidOptionError('APP', 'shoal deploy needs an application file or a config file');
  if (isConfigFile(file)) {
    refuseAppFlags(values);
    return deployConfig(file, { address, token: tokenOf(values), waitMs: intFlag('wait', values.wait, 120_000, 0), dryRun: values['dry-run'] === true, prune: values.prune === true });
  }
  for (const flag of ['dry-run', 'prune'] as const) if (values[flag] !== undefined) throw new InvalidOptionError(`--${flag}`, 'applies to a config file (shoal deploy config.yaml)');
  const spec = await loadAppSpec(file, { ...(values.export ? { exportName: values.export } : {}), ...(values.name ? { name: values.name } : {}), ...(values['route-prefix'] ? { routePrefix: values['route-prefix'] } : {}) });
  const token = tokenOf(values);
  const res = await withProgress(spec.name, () => control(address, token, 'GET', '/api/status') as Promise<ProgressStatus>, 'redraw',
    () => control(address, token, 'POST', `/api/apps?wait=${intFlag('wait', values.wait, 120_000, 0)}`, spec)) as { http?: string };
  process.stdout.write(`deployed "${spec.name}": ${res.http ?? ''}${spec.routePrefix ?? ''}\n`);
  return 0;
}

/** What GET /api/status answers: the controller's status and the head's addresses. */
type StatusJson = ClusterStatus & { cluster: string; http: string };

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

const gib = (b: number): string => `${(b / 2 ** 30).toFixed(1)}G`;

export function formatStatus(s: StatusJson): string {
  const out: string[] = [`head: cluster ${s.cluster}  http ${s.http}`, ''];
  out.push('APPLICATIONS');
  const appRows = [['APP', 'ROUTE', 'DEPLOYMENT', 'STATUS', 'REPLICAS', 'MESSAGE']];
  for (const a of s.applications) for (const d of a.deployments) appRows.push([a.name, a.routePrefix ?? '-', d.name + (d.name === a.ingress ? ' (ingress)' : ''), d.status, `${d.running}/${d.numReplicas}`, d.message]);
  out.push(appRows.length > 1 ? table(appRows) : '  (none)');
  const versionRows = [['DEPLOYMENT', 'VERSION', 'DEPLOYED', 'RUNNING', '']];
  for (const a of s.applications) for (const d of a.deployments) {
    for (const v of d.versions ?? []) versionRows.push([`${a.name}/${d.name}`, v.id, new Date(v.createdAtMs).toISOString(), String(v.running), v.current ? 'current' : '']);
  }
  if (versionRows.length > 1) out.push('', 'VERSIONS', table(versionRows));
  const rollouts = s.applications.flatMap((a) => a.deployments.filter((d) => d.rollout !== undefined || (d.decisions ?? []).length > 0).map((d) => ({ key: `${a.name}/${d.name}`, d })));
  if (rollouts.length > 0) {
    out.push('', 'ROLLOUTS');
    for (const { key, d } of rollouts) {
      const r = d.rollout;
      if (r !== undefined) out.push(`  ${key}: ${r.phase} ${r.from} -> ${r.to} at ${r.percent}%${r.step !== undefined ? ` (step ${r.step})` : ''}${r.failures > 0 ? `, ${r.failures} failures` : ''}${r.note ? `: ${r.note}` : ''}`);
      for (const x of (d.decisions ?? []).slice(-5)) out.push(`    ${new Date(x.atMs).toISOString()} ${x.action} ${x.from} -> ${x.to}: ${x.reason}`);
      for (const [v, sh] of Object.entries(d.shadow ?? {})) out.push(`    shadow ${v}: ${sh.compared} compared, agreement ${(sh.agreement * 100).toFixed(2)}%, mean abs diff ${sh.meanAbsDiff.toPrecision(3)}, max abs diff ${sh.maxAbsDiff.toPrecision(3)}, ${sh.dropped} dropped, ${sh.shadowErrors} shadow errors`);
    }
  }
  out.push(...sloLines(s));
  out.push('', 'REPLICAS');
  const repRows = [['REPLICA', 'APP', 'DEPLOYMENT', 'STATE', 'WORKER', 'ERROR']];
  // "w1:gpu0" for a replica placed by device memory.
  const deviceLabel = (workerId: string, index: number): string => {
    const d = s.workers.find((w) => w.workerId === workerId)?.resources.devices?.find((x) => x.index === index);
    return `${d?.kind === 'host' ? 'host' : 'gpu'}${index}`;
  };
  for (const r of s.replicas) {
    const where = r.devices === undefined ? r.workerId : `${r.workerId}:${r.devices.map((i) => deviceLabel(r.workerId, i)).join('+')}`;
    // A starting replica's model load, as its code last reported it: "STARTING (45% of 1.2 GiB)".
    const state = r.load === undefined ? r.state : `${r.state} (${Math.floor(100 * loadFraction(r.load))}% of ${formatBytes(r.load.total)})`;
    repRows.push([r.replicaId, r.app, r.deployment, state, where, r.error ?? '']);
  }
  out.push(repRows.length > 1 ? table(repRows) : '  (none)', '', 'WORKERS');
  const wRows = [['WORKER', 'NAME', 'STATE', 'PID', 'CPUS used/total', 'GPUS used/total', 'MEMORY', 'REPLICAS', 'DEVICES']];
  for (const w of s.workers) {
    const devices = (w.resources.devices ?? []).map((d, i) => `${d.kind === 'host' ? 'host' : 'gpu'}${d.index ?? i} ${d.name} ${gib(d.freeBytes)}/${gib(d.totalBytes)} free`).join('; ');
    wRows.push([w.workerId, w.name, w.state, String(w.pid ?? '-'), `${w.used.cpus}/${w.resources.cpus}`, `${w.used.gpus}/${w.resources.gpus}`, `${gib(w.used.memory)}/${gib(w.resources.memory)}`, String(w.replicas), devices || '-']);
  }
  out.push(wRows.length > 1 ? table(wRows) : '  (none)');
  return `${out.join('\n')}\n`;
}

const pct = (x: number | null | undefined, digits = 2): string => (x === null || x === undefined ? '-' : `${(x * 100).toFixed(digits)}%`);
const msOf = (x: number | null | undefined): string => (x === null || x === undefined ? '-' : x < 10 ? `${x.toFixed(2)}ms` : `${Math.round(x)}ms`);
const burnOf = (x: number | null | undefined): string => (x === null || x === undefined ? '-' : x.toFixed(2));
type SloObjective = NonNullable<ClusterStatus['applications'][number]['deployments'][number]['slo']>['objectives'][number];
/**
 * A burn over a window the series does not yet cover in full is marked `*`: it is shown but does not page. The
 * window's length is its name (5m, 1h); coveredMs is absent from a head older than it.
 */
function burnCell(o: SloObjective, w: keyof SloObjective['burn']): string {
  const covered = (o.coveredMs as SloObjective['coveredMs'] | undefined)?.[w];
  const windowMs = Number(w.slice(0, -1)) * (w.endsWith('h') ? 3_600_000 : 60_000);
  return o.burn[w] !== null && covered !== undefined && covered < windowMs ? `${burnOf(o.burn[w])}*` : burnOf(o.burn[w]);
}

/** TRAFFIC, SLOS and COST sections of `shoal status` (docs/slo.md says what each figure is). */
function sloLines(s: StatusJson): string[] {
  const out: string[] = [];
  const deps = s.applications.flatMap((a) => a.deployments.map((d) => ({ key: `${a.name}/${d.name}`, d })));
  const trafficRows = [['DEPLOYMENT', 'RPS', 'ERRORS', 'P50', 'P95', 'P99', 'OVER']];
  for (const { key, d } of deps) {
    const t = d.traffic;
    if (t !== undefined) trafficRows.push([key, t.rps.toFixed(1), pct(t.errorRate), msOf(t.p50Ms), msOf(t.p95Ms), msOf(t.p99Ms), `${Math.round(t.windowMs / 1000)}s`]);
  }
  if (trafficRows.length > 1) out.push('', 'TRAFFIC', table(trafficRows));
  const sloRows = [['DEPLOYMENT', 'OBJECTIVE', 'TARGET', 'ATTAINED 5m', '1h', 'PERIOD', 'BUDGET LEFT', 'BURN 5m', '1h', '30m', '6h', '']];
  for (const { key, d } of deps) {
    for (const o of d.slo?.objectives ?? []) {
      const name = o.thresholdMs !== undefined ? `${o.name} <= ${o.thresholdMs}ms` : o.name;
      sloRows.push([key, name, pct(o.target, 3), pct(o.attainment['5m'], 3), pct(o.attainment['1h'], 3), pct(o.attainment.period, 3), pct(o.budgetRemaining, 1),
        burnCell(o, '5m'), burnCell(o, '1h'), burnCell(o, '30m'), burnCell(o, '6h'), o.alerting ? 'ALERT' : '']);
    }
  }
  if (sloRows.length > 1) out.push('', 'SLOS', table(sloRows));
  if (sloRows.some((r) => r.some((c) => c.endsWith('*')))) out.push('  * window not yet covered (the head has watched for less): shown, does not page');
  const costRows = [['DEPLOYMENT', 'COST/1K REQ', 'BUSY COST/1K', 'IDLE', 'COST', 'CORE-H', 'DEVICE-H', 'REQUESTS', 'OVER']];
  for (const { key, d } of deps) {
    const c = d.cost;
    if (c === undefined) continue;
    const money = (x: number | null): string => (x === null ? '-' : x.toPrecision(4));
    costRows.push([key, money(c.costPer1kRequests), money(c.busyCostPer1kRequests), pct(c.idleShare, 1), money(c.cost), c.allocatedCoreHours.toFixed(3), c.allocatedDeviceHours.toFixed(3), String(c.requests), `${Math.round(c.windowMs / 1000)}s`]);
  }
  if (costRows.length > 1) out.push('', 'COST (last hour)', table(costRows));
  return out;
}

async function status(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { address: { type: 'string' }, ...tokenFlags, json: { type: 'boolean' } }, allowPositionals: false });
  const s = await control(requireAddress(values.address), tokenOf(values), 'GET', '/api/status') as StatusJson;
  process.stdout.write(values.json ? `${JSON.stringify(s, null, 2)}\n` : formatStatus(s));
  return 0;
}

/** `shoal rollback APP/DEPLOYMENT` (or DEPLOYMENT when one application has it), `shoal promote ...`. */
async function deploymentAction(action: 'rollback' | 'promote', argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { address: { type: 'string' }, ...tokenFlags, wait: { type: 'string' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new InvalidOptionError('DEPLOYMENT', `shoal ${action} takes one deployment: APP/DEPLOYMENT, or DEPLOYMENT when only one application has it`);
  const address = requireAddress(values.address);
  const token = tokenOf(values);
  let [app, dep] = positionals[0]!.includes('/') ? positionals[0]!.split('/', 2) as [string, string] : [undefined, positionals[0]!];
  if (app === undefined) {
    const s = await control(address, token, 'GET', '/api/status') as StatusJson;
    const owners = s.applications.filter((a) => a.deployments.some((d) => d.name === dep)).map((a) => a.name);
    if (owners.length !== 1) throw new InvalidOptionError('DEPLOYMENT', owners.length === 0 ? `no application has a deployment "${dep}"` : `"${dep}" is a deployment of ${owners.join(', ')}: say which, as APP/${dep}`, dep);
    app = owners[0]!;
  }
  const r = await control(address, token, 'POST', `/api/apps/${encodeURIComponent(app)}/deployments/${encodeURIComponent(dep)}/${action}`) as { from?: string; to?: string; version?: string };
  process.stdout.write(action === 'rollback' ? `${app}/${dep}: rolling back from ${r.from} to ${r.to}\n` : `${app}/${dep}: promoted ${r.version}; it rolls out to the full count\n`);
  // In a terminal, the rollout's progress until it has played out (Ctrl-C stops watching, not the rollout).
  await followProgress({ stream: process.stdout, app, verb: action === 'rollback' ? 'rolling back' : 'promoting', status: () => control(address, token, 'GET', '/api/status') as Promise<ProgressStatus>, until: (st) => deploymentSettled(st, app!, dep), timeoutMs: intFlag('wait', values.wait, 120_000, 0) });
  return 0;
}

/** `shoal experiment [NAME]`: an experiment's report (all of them without a name). */
async function experiment(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { address: { type: 'string' }, ...tokenFlags, json: { type: 'boolean' } }, allowPositionals: true });
  const address = requireAddress(values.address);
  const token = tokenOf(values);
  if (positionals.length === 0) {
    const r = await control(address, token, 'GET', '/api/experiments');
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    return 0;
  }
  const path = `/api/experiments/${encodeURIComponent(positionals[0]!)}`;
  const report = await control(address, token, 'GET', path) as ExperimentReport;
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatExperimentReport(report)}\n`);
  return 0;
}

/** `shoal logs`: see logs.ts. */
async function logs(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { address: { type: 'string' }, ...tokenFlags, ...LOGS_FLAGS }, allowPositionals: false });
  const path = logsPath(values);
  const token = tokenOf(values);
  if (token === undefined) throw new InvalidOptionError('--token-file', 'is required to talk to a head (a file holding the token `shoal start` printed), or set SHOAL_TOKEN');
  return printLogs(controlUrl(requireAddress(values.address), path), token, { json: values.json === true });
}

async function shutdown(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { address: { type: 'string' }, ...tokenFlags, 'keep-workers': { type: 'boolean' } }, allowPositionals: false });
  const address = requireAddress(values.address);
  const keep = values['keep-workers'] === true;
  await control(address, tokenOf(values), 'POST', keep ? '/api/shutdown?keepWorkers=1' : '/api/shutdown');
  process.stdout.write(keep ? `asked the head at ${address} to stop; its workers keep serving and rejoin the next head\n` : `asked the head at ${address} to shut down\n`);
  return 0;
}
