/**
 * Installing shoal as a user does: the packed tarballs (`pnpm run pack`) go with npm into a fresh project outside
 * the repository, a TypeScript app there typechecks against the shipped declarations, `npx shoal run app.ts`
 * answers over HTTP with batching, and Ctrl-C (SIGINT to the process group, as a terminal sends it) leaves no
 * process and no bound port behind; `npx shoal config generate app.ts -o config.yaml` writes a file that
 * `npx shoal run config.yaml` serves, with a plain JavaScript app as its second application, Ctrl-C again clean.
 * The native addon builds from source on install, or says why it did not.
 *
 * Third-party dependencies come from the npm registry (npm's cache after the first run); every @shoal/* package
 * comes from a tarball ("overrides"), which the lockfile confirms. Skipped, with the reason logged, only when npm
 * is not on PATH.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { waitFor } from './helpers.ts';

const ROOT = resolve(import.meta.dirname, '..');
const NPM_MISSING = spawnSync('npm', ['--version'], { stdio: 'ignore' }).status !== 0;
if (NPM_MISSING) console.warn('install.test.ts: SKIPPED: npm is not on PATH, so nothing can be installed as a user would');

/** The user's app: a batched model that reports the batch each item ran in, and an ingress calling it through a handle. */
const APP = `import { deployment, batch, response, type Handle, type ShoalRequest } from 'shoal';

let batches = 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Model {
  // Each batch takes a while, so requests that arrive meanwhile queue up and go together.
  predict = batch(async (texts: string[]) => {
    const id = ++batches;
    await sleep(300);
    return texts.map((t) => ({ length: t.length, batchSize: texts.length, batchId: id }));
  }, { maxBatchSize: 8, maxWaitMs: 2000 });
}

export class Api {
  constructor(private readonly model: Handle<Model>) {}

  async fetch(req: ShoalRequest): Promise<unknown> {
    const text = req.text();
    if (text === '') return response({ error: 'send some text' }, { status: 400 });
    const answer: { length: number; batchSize: number; batchId: number } = await this.model.predict(text);
    return { text, ...answer };
  }
}

export default deployment(Api).bind(deployment(Model, { numReplicas: 1 }).bind());
`;

/** A plain ESM JavaScript app (no TypeScript, no build step): one deployment that answers in capitals. */
const JS_APP = `import { deployment } from 'shoal';

export class Echo {
  fetch(req) {
    return { echo: req.text().toUpperCase(), pid: process.pid };
  }
}

export default deployment(Echo, { resources: { cpus: 0 } }).bind();
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true,
    types: ['node'], skipLibCheck: false,
  },
  files: ['app.ts'],
};

interface Ran { code: number | null; out: string; stdout: string }

/**
 * The environment of a user's shell: nothing from the package manager that runs this suite (npm_config_*, the
 * repository's node_modules/.bin on PATH, NODE_OPTIONS with vitest's loaders), which could resolve into the repository.
 */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(npm_|pnpm_|PNPM_|VITEST|NODE_OPTIONS$|NODE_PATH$|INIT_CWD$|TSX_)/i.test(k)) continue;
    env[k] = v;
  }
  env.PATH = (process.env.PATH ?? '').split(delimiter).filter((d) => !d.startsWith(ROOT)).join(delimiter);
  return { ...env, ...extra };
}

/** Runs a command to its end; `out` has stdout and stderr together as they came. */
function exec(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Ran> {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => { child.kill('SIGKILL'); out += `\n[killed after ${timeoutMs} ms]`; }, timeoutMs);
    child.on('error', (err) => { clearTimeout(timer); fail(err); });
    child.on('close', (code) => { clearTimeout(timer); done({ code, out, stdout }); });
  });
}

function expectOk(what: string, r: Ran): string {
  if (r.code !== 0) throw new Error(`${what} exited with ${r.code}:\n${r.out.slice(-6000)}`);
  return r.out;
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address() as AddressInfo; s.close(() => done(port)); });
  });
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = createServer();
    s.once('error', () => done(false));
    s.listen(port, '127.0.0.1', () => s.close(() => done(true)));
  });
}

/** Processes (other than this one) whose command line mentions `dir`. */
function processesMentioning(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    if (Number(pid) === process.pid) continue;
    let cmdline: string;
    try { cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim(); } catch { continue; }
    if (cmdline.includes(dir)) found.push(`${pid}: ${cmdline}`);
  }
  return found;
}

/** The path of each file in a tarball, without npm's leading package/. */
function tarballFiles(tarball: string): Set<string> {
  const r = spawnSync('tar', ['tzf', tarball], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar tzf ${tarball}: ${r.stderr}`);
  return new Set(r.stdout.split('\n').filter((l) => l !== '' && !l.endsWith('/')).map((l) => l.replace(/^package\//, '')));
}

function tarballManifest(tarball: string): { name: string; exports?: unknown; bin?: string | Record<string, string>; dependencies?: Record<string, string> } {
  const r = spawnSync('tar', ['xzfO', tarball, 'package/package.json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar xzfO ${tarball} package/package.json: ${r.stderr}`);
  return JSON.parse(r.stdout) as ReturnType<typeof tarballManifest>;
}

/** Files an "exports" value names for users (every condition but the repository's own "source"). */
function exportTargets(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => (k === 'source' ? [] : exportTargets(v)));
}

function haveTool(name: string): boolean {
  return spawnSync(name, ['--version'], { stdio: 'ignore' }).status === 0;
}

describe.skipIf(NPM_MISSING)('installing the packed tarballs into a project of its own', () => {
  let work = '';
  let project = '';
  /** package name -> tarball path */
  const tarballs = new Map<string, string>();
  let installOut = '';
  let run: ChildProcess | undefined;

  beforeAll(async () => {
    work = realpathSync(mkdtempSync(join(tmpdir(), 'shoal-install-')));
    // The suite's other files run the repository's compiled dist/ meanwhile: build incrementally, never clean.
    const pack = await exec(process.execPath, [join(ROOT, 'packages/shoal/scripts/pack.mjs'), '--out', join(work, 'tarballs'), '--no-clean'], ROOT, process.env, 120_000);
    expectOk('pnpm run pack', pack);
    for (const path of pack.stdout.split('\n').filter((l) => l.endsWith('.tgz'))) tarballs.set(tarballManifest(path).name, path);

    project = join(work, 'my-app');
    mkdirSync(project);
    const overrides = Object.fromEntries([...tarballs].filter(([name]) => name !== 'shoal').map(([name, path]) => [name, `file:${path}`]));
    writeFileSync(join(project, 'package.json'), `${JSON.stringify({
      name: 'my-app', version: '1.0.0', private: true, type: 'module',
      dependencies: { shoal: `file:${tarballs.get('shoal')}` },
      devDependencies: { typescript: '5.9.3', '@types/node': '^20.19.0' },
      overrides,
    }, null, 2)}\n`);
    writeFileSync(join(project, 'app.ts'), APP);
    writeFileSync(join(project, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
    // onnxruntime-node's postinstall would download CUDA files; SHOAL_NATIVE_CUDA=OFF keeps the addon build to the
    // host backend where nvcc happens to exist (its CUDA compile is native/scripts/ci.sh's business, and minutes long).
    // --foreground-scripts: npm shows install scripts' output, @shoal/native's log lines among it.
    const installed = await exec('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts'], project,
      userEnv({ ONNXRUNTIME_NODE_INSTALL: 'skip', SHOAL_NATIVE_CUDA: 'OFF' }), 300_000);
    installOut = expectOk('npm install', installed);
  }, 480_000);

  afterAll(async () => {
    // Only when a test failed before its Ctrl-C: the run's process group is ours alone.
    if (run?.pid !== undefined && run.exitCode === null && run.signalCode === null) {
      try { process.kill(-run.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
    if (work !== '' && process.env.SHOAL_KEEP_INSTALL_DIR !== '1') rmSync(work, { recursive: true, force: true });
  });

  it('packs every public package; each tarball ships its compiled files, no sources or tests', () => {
    const publicNames = readdirSync(join(ROOT, 'packages'))
      .filter((d) => existsSync(join(ROOT, 'packages', d, 'package.json')))
      .map((d) => JSON.parse(readFileSync(join(ROOT, 'packages', d, 'package.json'), 'utf8')) as { name: string; private?: boolean })
      .filter((m) => m.private !== true).map((m) => m.name).sort();
    expect([...tarballs.keys()].sort()).toEqual(publicNames);
    expect(publicNames).toContain('shoal');
    for (const [name, tarball] of tarballs) {
      const files = tarballFiles(tarball);
      const manifest = tarballManifest(tarball);
      const leaked = [...files].filter((f) => /^(src|test)\//.test(f) || /(^|\/)[^/]*\.test\.|\.tsbuildinfo$/.test(f) || (/\.[mc]?ts$/.test(f) && !/\.d\.[mc]?ts$/.test(f)));
      expect(leaked, `${name} ships sources or tests`).toEqual([]);
      expect([...files].some((f) => f.startsWith('dist/') && f.endsWith('.js')), `${name} ships dist/*.js`).toBe(true);
      const named = [...exportTargets(manifest.exports), ...(typeof manifest.bin === 'string' ? [manifest.bin] : Object.values(manifest.bin ?? {}))];
      expect(named.length, `${name} names files in exports/bin`).toBeGreaterThan(0);
      for (const target of named) expect(files.has(target.replace(/^\.\//, '')), `${name}: ${target} (named in exports/bin) is in the tarball`).toBe(true);
      const workspaceRanges = Object.entries(manifest.dependencies ?? {}).filter(([, range]) => range.startsWith('workspace:'));
      expect(workspaceRanges, `${name}'s dependencies`).toEqual([]);
    }
    const native = tarballFiles(tarballs.get('@shoal/native') as string);
    expect(native.has('cpp/CMakeLists.txt')).toBe(true);
    expect(native.has('CMakeLists.txt')).toBe(true);
    expect([...native].filter((f) => f.startsWith('cpp/tests/') || f.startsWith('build/'))).toEqual([]);
    // The copy exists only while a pack runs: the repository's addon build keeps using native/.
    expect(existsSync(join(ROOT, 'packages/native/cpp'))).toBe(false);
  }, 30_000);

  it('resolves shoal and every @shoal/* package from the project\'s own node_modules, all from the tarballs', async () => {
    const script = `console.log(JSON.stringify(['shoal', 'shoal/native', '@shoal/core', '@shoal/worker'].map((s) => import.meta.resolve(s))))`;
    const out = expectOk('node -e import.meta.resolve', await exec(process.execPath, ['--input-type=module', '-e', script], project, userEnv(), 30_000));
    const resolved = (JSON.parse(out) as string[]).map((u) => new URL(u).pathname);
    for (const path of resolved) {
      expect(path.startsWith(`${project}/node_modules/`), path).toBe(true);
      expect(path).toMatch(/\/dist\/[\w-]+\.js$/);
    }
    // The lockfile says where each package came from: every @shoal/* (hoisted or nested) from its tarball.
    const lock = JSON.parse(readFileSync(join(project, 'package-lock.json'), 'utf8')) as { packages: Record<string, { resolved?: string }> };
    const shoalEntries = Object.entries(lock.packages).filter(([path]) => /node_modules\/(@shoal\/[^/]+|shoal)$/.test(path));
    const names = shoalEntries.map(([path]) => path.replace(/^.*node_modules\//, ''));
    expect([...new Set(names)].sort()).toEqual([...tarballs.keys()].sort());
    for (const [path, entry] of shoalEntries) {
      expect(entry.resolved, `${path} resolved from`).toMatch(/^file:/);
      expect(resolve(project, (entry.resolved as string).slice('file:'.length)), `${path} resolved from`).toBe(tarballs.get(path.replace(/^.*node_modules\//, '')));
    }
    // The umbrella's own bin runs the CLI too (npm links one of the two "shoal" bins into node_modules/.bin).
    const help = expectOk('shoal --help', await exec(process.execPath, [join(project, 'node_modules/shoal/bin/shoal.mjs'), '--help'], project, userEnv(), 30_000));
    expect(help).toMatch(/^usage: shoal <command>/);
  }, 60_000);

  it('typechecks the app against the shipped declarations (npx tsc --noEmit)', async () => {
    expectOk('npx tsc --noEmit', await exec('npx', ['--no-install', 'tsc', '--noEmit', '-p', '.'], project, userEnv(), 120_000));
    // And a type error in the user's code is caught through the same declarations (the check is not vacuous).
    writeFileSync(join(project, 'bad.ts'), `import { batch } from 'shoal';\nexport const f = batch(async (xs: string[]) => xs, { maxBatchSize: 'eight' });\n`);
    try {
      const bad = await exec('npx', ['--no-install', 'tsc', '--noEmit', '--strict', '--module', 'NodeNext', '--moduleResolution', 'NodeNext', '--types', 'node', 'bad.ts'], project, userEnv(), 120_000);
      expect(bad.code).not.toBe(0);
      expect(bad.out).toMatch(/bad\.ts\(2,\d+\): error TS2322: .*string.*number/);
    } finally {
      rmSync(join(project, 'bad.ts'));
    }
  }, 240_000);

  it('builds the native addon from source on install, or logs why not', async () => {
    const log = join(project, 'node_modules/@shoal/native/build/install.log');
    expect(existsSync(log), 'install.log of @shoal/native').toBe(true);
    const logged = readFileSync(log, 'utf8');
    expect(installOut).toContain('@shoal/native: ');
    const canBuild = haveTool('cmake') && (haveTool('c++') || haveTool('g++') || haveTool('clang++'));
    if (!canBuild && process.env.SHOAL_REQUIRE_NATIVE === undefined) {
      expect(logged).toMatch(/(cmake not found|no C\+\+ compiler found \([^)]*\)); skipping the addon build\. .*npm rebuild @shoal\/native/);
      return;
    }
    expect(logged).toMatch(/host-only addon built|addon built/);
    const probe = `import { processRuntime } from 'shoal/native';\nconst rt = processRuntime();\nconsole.log(JSON.stringify({ backend: rt.backend, devices: rt.devices().map((d) => d.name) }));\n`;
    const out = expectOk('processRuntime()', await exec(process.execPath, ['--input-type=module', '-e', probe], project, userEnv({ SHOAL_LOG_LEVEL: 'warn' }), 60_000));
    const report = JSON.parse(out.trim().split('\n').at(-1) as string) as { backend: string; devices: string[] };
    expect(['host', 'cuda']).toContain(report.backend);
    expect(report.devices.length).toBeGreaterThan(0);
  }, 90_000);

  it('without cmake or a compiler the install skips the build and says so; a feature needing the addon names the remedy', async () => {
    // A PATH with node alone (and then node and cmake): the script must stop before touching the build.
    const bin = join(work, 'bin-node-only');
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    const script = join(project, 'node_modules/@shoal/native/scripts/install.mjs');
    const noCmake = expectOk('install.mjs without cmake', await exec(process.execPath, [script], project, userEnv({ PATH: bin, CXX: '' }), 30_000));
    expect(noCmake).toMatch(/@shoal\/native: cmake not found; skipping the addon build\. Install cmake .* then run `npm rebuild @shoal\/native`/);
    const cmake = spawnSync('sh', ['-c', 'command -v cmake'], { encoding: 'utf8' }).stdout.trim();
    if (cmake !== '') {
      const bin2 = join(work, 'bin-node-cmake');
      mkdirSync(bin2);
      symlinkSync(process.execPath, join(bin2, 'node'));
      symlinkSync(cmake, join(bin2, 'cmake'));
      const noCxx = expectOk('install.mjs without a compiler', await exec(process.execPath, [script], project, userEnv({ PATH: bin2, CXX: '' }), 30_000));
      expect(noCxx).toMatch(/@shoal\/native: no C\+\+ compiler found \(none of c\+\+, g\+\+, clang\+\+ is on PATH\); skipping the addon build/);
    }
    expect(readFileSync(join(project, 'node_modules/@shoal/native/build/install.log'), 'utf8')).toMatch(/cmake not found; skipping/);
    // Where no addon was built, the native API throws AddonNotBuiltError naming what is missing and how to build it.
    const empty = mkdtempSync(join(work, 'no-addon-'));
    const probe = `import { openNativeRuntime, AddonNotBuiltError } from 'shoal/native';
try { openNativeRuntime({ addonDir: ${JSON.stringify(empty)} }); console.log('loaded'); }
catch (e) { console.log(JSON.stringify({ notBuilt: e instanceof AddonNotBuiltError, code: e.code, message: e.message })); }\n`;
    const out = expectOk('openNativeRuntime without an addon', await exec(process.execPath, ['--input-type=module', '-e', probe], project, userEnv({ SHOAL_LOG_LEVEL: 'error' }), 30_000));
    const err = JSON.parse(out.trim().split('\n').at(-1) as string) as { notBuilt: boolean; code: string; message: string };
    expect(err.notBuilt).toBe(true);
    expect(err.message).toContain(`host addon not built: ${join(empty, 'shoal_native_host.node')}`);
    expect(err.message).toMatch(/build it with: .*(cmake|rebuild)/);
  }, 90_000);

  /**
   * Starts `npx shoal ARGS` in the project in a process group of its own, like a job a shell starts (Ctrl-C is
   * SIGINT to the whole group), and waits until its output matches `ready`.
   */
  async function startShoal(args: string[], ready: RegExp): Promise<{ out: () => string; ctrlC: (httpPort: number) => Promise<void> }> {
    run = spawn('npx', ['--no-install', 'shoal', ...args], {
      cwd: project, env: userEnv({ SHOAL_LOG_LEVEL: 'warn' }), stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    const child = run;
    let out = '';
    child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    await waitFor(`shoal ${args.join(' ')} to report ready`, () => ready.test(out) || child.exitCode !== null, 90_000).catch((err: Error) => { throw new Error(`${err.message}:\n${out}`); });
    expect(child.exitCode, out).toBeNull();
    return {
      out: () => out,
      ctrlC: async (httpPort: number) => {
        process.kill(-(child.pid as number), 'SIGINT');
        await exited;
        await waitFor('every process of the project to exit', () => processesMentioning(project).length === 0, 20_000)
          .catch(() => { throw new Error(`left behind after Ctrl-C:\n${processesMentioning(project).join('\n')}\n--- output:\n${out}`); });
        expect(await portIsFree(httpPort), `port ${httpPort} is free again`).toBe(true);
        expect(out).not.toMatch(/"level":"(error|fatal)"/);
      },
    };
  }

  it('npx shoal run app.ts answers over HTTP, batches, and Ctrl-C leaves nothing behind', async () => {
    const httpPort = await freePort();
    const shoal = await startShoal(['run', 'app.ts', '--port', '0', '--http-port', String(httpPort)], /ready: http:\/\/\S+/);
    expect(shoal.out()).toContain(`http://127.0.0.1:${httpPort}`);

    const texts = Array.from({ length: 8 }, (_, i) => `request number ${i}${'!'.repeat(i)}`);
    const answers = await Promise.all(texts.map(async (text) => {
      const res = await fetch(`http://127.0.0.1:${httpPort}/`, { method: 'POST', body: text });
      expect(res.status).toBe(200);
      return await res.json() as { text: string; length: number; batchSize: number; batchId: number };
    }));
    answers.forEach((a, i) => expect(a).toMatchObject({ text: texts[i], length: texts[i]?.length }));
    // Every item of a batch reports that batch's size, so the answers per batch id add up to it.
    const perBatch = new Map<number, { seen: number; size: number }>();
    for (const a of answers) {
      const b = perBatch.get(a.batchId) ?? { seen: 0, size: a.batchSize };
      expect(a.batchSize).toBe(b.size);
      perBatch.set(a.batchId, { seen: b.seen + 1, size: b.size });
    }
    for (const b of perBatch.values()) expect(b.seen).toBe(b.size);
    expect(Math.max(...answers.map((a) => a.batchSize)), 'some requests ran together in one batch').toBeGreaterThan(1);
    const bad = await fetch(`http://127.0.0.1:${httpPort}/`, { method: 'POST', body: '' });
    expect(bad.status).toBe(400);

    await shoal.ctrlC(httpPort);
  }, 180_000);

  it('npx shoal config generate app.ts, then npx shoal run config.yaml with a plain JavaScript app beside it', async () => {
    writeFileSync(join(project, 'echo.js'), JS_APP);
    const gen = expectOk('npx shoal config generate', await exec('npx', ['--no-install', 'shoal', 'config', 'generate', 'app.ts', '-o', 'config.yaml'], project, userEnv(), 60_000));
    expect(gen).toBe('wrote config.yaml: application "default" from app.ts\n');
    const generated = readFileSync(join(project, 'config.yaml'), 'utf8');
    expect(generated).toMatch(/^applications:\n {2}- name: default\n {4}importPath: \.\/app\.ts\n {4}routePrefix: \/\n/m);
    // The JavaScript app is a second application of the same file: one head serves both (one start, not two).
    writeFileSync(join(project, 'config.yaml'), `${generated.trimEnd()}\n  - name: echo\n    importPath: ./echo.js\n    routePrefix: /echo\n`);

    const httpPort = await freePort();
    const shoal = await startShoal(['run', 'config.yaml', '--port', '0', '--http-port', String(httpPort)], /2 applications from config\.yaml serving/);
    expect(shoal.out()).toContain(`application "echo" ready: http://127.0.0.1:${httpPort}/echo`);
    const ts = await fetch(`http://127.0.0.1:${httpPort}/`, { method: 'POST', body: 'from the file' });
    expect(ts.status).toBe(200);
    expect(await ts.json()).toMatchObject({ text: 'from the file', length: 13, batchSize: 1 });
    const js = await fetch(`http://127.0.0.1:${httpPort}/echo`, { method: 'POST', body: 'plain js' });
    expect(js.status).toBe(200);
    expect(await js.json()).toEqual({ echo: 'PLAIN JS', pid: expect.any(Number) });

    await shoal.ctrlC(httpPort);
  }, 180_000);
});
