/**
 * `shoal run CONFIG` and `shoal deploy CONFIG` as a user runs them: the CLI as child processes, a head with real
 * local workers. Re-applying a file restarts no replica; a new numReplicas touches only its deployment; a new
 * userConfig reaches the running replicas without a restart; --dry-run changes nothing; --prune deletes an
 * application the file does not list, and without it that application is left alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';

const BIN = resolve(import.meta.dirname, '../bin/shoal.mjs');
const FIXTURE = resolve(import.meta.dirname, 'fixtures/config/app.ts');
/** @shoal/core's compiled entry, for an app outside the repository's packages. */
const CORE = resolve(import.meta.dirname, '../../core/dist/index.js');
const TOKEN = 'config-test-token-0123456789';

function shoal(args: string[]): { child: ChildProcessWithoutNullStreams; out: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, SHOAL_LOG_LEVEL: 'warn' }, stdio: 'pipe' });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
  return { child, out: () => out };
}

async function exitOf(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

/** Runs a shoal command to its end: its exit code and what it printed. */
async function shoalToEnd(args: string[]): Promise<{ code: number | null; out: string }> {
  const c = shoal(args);
  const code = await exitOf(c.child);
  return { code, out: c.out() };
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface Status {
  applications: Array<{ name: string; deployments: Array<{ name: string; numReplicas: number; version: string }> }>;
  replicas: Array<{ replicaId: string; app: string; deployment: string; state: string }>;
  workers: Array<{ pid?: number; resources: { cpus: number } }>;
}

let dir: string;
let run: { child: ChildProcessWithoutNullStreams; out: () => string };
let cluster: string;
let http: string;

async function status(): Promise<Status> {
  const res = await fetch(`${cluster.replace('ws', 'http')}/api/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return await res.json() as Status;
}

/** Running replica ids per app/deployment, sorted. */
async function replicaIds(): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const r of (await status()).replicas) if (r.state === 'RUNNING') (out[`${r.app}/${r.deployment}`] ??= []).push(r.replicaId);
  for (const k of Object.keys(out)) out[k]!.sort();
  return out;
}

/**
 * A config file of `main` (the fixture's default export, as writeConfig's no-side.yaml has it) and more applications
 * of the fixture's `side` export, each `[name, routePrefix, SideModel's cpus]` with two SideModel replicas.
 */
function writeApps(file: string, mainPrefix: string, sides: Array<[string, string, number]>): string {
  const imp = relative(dir, FIXTURE);
  const lines = ['applications:', '  - name: main', `    importPath: ${imp}`, `    routePrefix: ${mainPrefix}`, '    deployments:', '      - name: Model', '        numReplicas: 3', '        userConfig: { tag: second }'];
  for (const [name, prefix, cpus] of sides) {
    lines.push(`  - name: ${name}`, `    importPath: "${imp}:side"`, `    routePrefix: ${prefix}`, '    deployments:', '      - name: SideModel', '        numReplicas: 2', `        resources: { cpus: ${cpus} }`);
  }
  writeFileSync(join(dir, file), `${lines.join('\n')}\n`);
  return join(dir, file);
}

/** A config file in the test's directory: `main` (the fixture's default export) and, unless left out, `side`. */
function writeConfig(name: string, opts: { modelReplicas?: number; tag?: string; side?: boolean } = {}): string {
  const imp = relative(dir, FIXTURE);
  const lines = [
    'applications:',
    '  - name: main',
    `    importPath: ${imp}`,
    '    routePrefix: /main',
    '    deployments:',
    '      - name: Model',
    `        numReplicas: ${opts.modelReplicas ?? 2}`,
    `        userConfig: { tag: ${opts.tag ?? 'first'} }`,
  ];
  if (opts.side !== false) lines.push('  - name: side', `    importPath: "${imp}:side"`, '    routePrefix: /side');
  const file = join(dir, name);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

const deployArgs = (file: string, ...more: string[]): string[] => ['deploy', file, '--address', cluster, '--token', TOKEN, ...more];

describe('shoal deploy CONFIG', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-config-deploy-'));
    const file = writeConfig('config.yaml');
    run = shoal(['run', file, '--port', '0', '--http-port', '0', '--workers', '2', '--token', TOKEN]);
    await waitFor('shoal run CONFIG to serve both applications', () => /applications from .* serving/.test(run.out()) || run.child.exitCode !== null, 90_000);
    const c = /cluster:\s+(ws:\/\/[\d.:]+)/.exec(run.out())?.[1];
    const h = /application "main" ready: (http:\/\/[\d.:]+)\/main/.exec(run.out())?.[1];
    if (c === undefined || h === undefined) throw new Error(`shoal run CONFIG did not start:\n${run.out()}`);
    cluster = c;
    http = h;
  }, 120_000);

  afterAll(async () => {
    if (run !== undefined && run.child.exitCode === null) {
      run.child.kill('SIGTERM');
      await exitOf(run.child);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('shoal run CONFIG serves every application with the options of the file', async () => {
    const s = await status();
    const main = s.applications.find((a) => a.name === 'main')!;
    expect(main.deployments.find((d) => d.name === 'Model')!.numReplicas).toBe(2);
    expect(s.applications.map((a) => a.name).sort()).toEqual(['main', 'side']);
    const answer = await (await fetch(`${http}/main`)).json() as { config: unknown };
    expect(answer.config).toEqual({ tag: 'first' });
    expect((await fetch(`${http}/side`)).status).toBe(200);
  });

  it('re-applying the same file restarts nothing; a new numReplicas touches only that deployment, --dry-run nothing', async () => {
    const before = await replicaIds();
    expect(before['main/Model']).toHaveLength(2);
    const again = await shoalToEnd(deployArgs(writeConfig('config.yaml')));
    expect(again.code).toBe(0);
    expect(again.out).toContain('application "main": unchanged\n  Front: unchanged\n  Model: unchanged\n');
    expect(again.out).toContain('application "side": unchanged\n');
    expect(again.out).toContain('applied: 0 created, 0 updated, 2 unchanged, 0 deleted');
    expect(await replicaIds()).toEqual(before);

    const scaled = writeConfig('scaled.yaml', { modelReplicas: 3 });
    const dry = await shoalToEnd(deployArgs(scaled, '--dry-run'));
    expect(dry.code).toBe(0);
    expect(dry.out).toMatch(/^dry run, nothing applied: /);
    expect(dry.out).toContain('  Model: updated: numReplicas 2 -> 3 (same version: no replica restarts)');
    expect(dry.out).not.toMatch(/^applied:/m);
    const afterDry = await status();
    expect(afterDry.applications.find((a) => a.name === 'main')!.deployments.find((d) => d.name === 'Model')!.numReplicas).toBe(2);
    expect(await replicaIds()).toEqual(before);

    const versions = Object.fromEntries(afterDry.applications.flatMap((a) => a.deployments.map((d) => [`${a.name}/${d.name}`, d.version])));
    const applied = await shoalToEnd(deployArgs(scaled));
    expect(applied.code).toBe(0);
    expect(applied.out).toContain('application "main": updated\n  Front: unchanged\n  Model: updated: numReplicas 2 -> 3 (same version: no replica restarts)\n');
    expect(applied.out).toContain('application "side": unchanged');
    const after = await replicaIds();
    expect(after['main/Model']).toHaveLength(3);
    // The two that ran still run; everything else is exactly as it was.
    expect(after['main/Model']!.filter((id) => before['main/Model']!.includes(id))).toEqual(before['main/Model']);
    expect({ ...after, 'main/Model': undefined }).toEqual({ ...before, 'main/Model': undefined });
    const s = await status();
    expect(Object.fromEntries(s.applications.flatMap((a) => a.deployments.map((d) => [`${a.name}/${d.name}`, d.version])))).toEqual(versions);
  });

  it('a new userConfig reaches the running replicas through reconfigure, with no restart', async () => {
    const before = await replicaIds();
    const res = await shoalToEnd(deployArgs(writeConfig('tagged.yaml', { modelReplicas: 3, tag: 'second' })));
    expect(res.code).toBe(0);
    expect(res.out).toContain('  Model: updated: userConfig {"tag":"first"} -> {"tag":"second"} (same version: no replica restarts)');
    await waitFor('every Model replica to hold the new userConfig', async () => {
      for (let i = 0; i < 12; i++) {
        if (((await (await fetch(`${http}/main`)).json()) as { config: { tag: string } }).config.tag !== 'second') return false;
      }
      return true;
    }, 20_000);
    // The same replicas (a restarted one would have a new id), reconfigured in place.
    expect(await replicaIds()).toEqual(before);
  });

  it('shoal config generate writes a file that deploys what the code declares', async () => {
    const out = join(dir, 'generated.yaml');
    const gen = await shoalToEnd(['config', 'generate', FIXTURE, '--export', 'side', '--name', 'side', '--route-prefix', '/side', '-o', out]);
    expect(gen.code).toBe(0);
    expect(gen.out).toBe(`wrote ${out}: application "side" from ${FIXTURE}\n`);
    const again = await shoalToEnd(['config', 'generate', FIXTURE, '-o', out]);
    expect(again.code).toBe(1);
    expect(again.out).toContain(`invalid option -o: ${out} exists; --force overwrites it`);
    // `side` runs as the first file deployed it, which sets none of its options: the generated file changes nothing.
    const dry = await shoalToEnd(deployArgs(out, '--dry-run'));
    expect(dry.code).toBe(0);
    expect(dry.out).toContain('application "side": unchanged\n  SideFront: unchanged\n  SideModel: unchanged\n');
    expect(dry.out).toContain('not in config: main; --prune deletes them');
  });

  it('an application the file does not list is left alone, and deleted with --prune', async () => {
    const before = await replicaIds();
    const file = writeConfig('no-side.yaml', { modelReplicas: 3, tag: 'second', side: false });
    const kept = await shoalToEnd(deployArgs(file));
    expect(kept.code).toBe(0);
    expect(kept.out).toContain('not in config: side; --prune deletes them');
    expect((await status()).applications.map((a) => a.name).sort()).toEqual(['main', 'side']);
    expect(await replicaIds()).toEqual(before);

    const dry = await shoalToEnd(deployArgs(file, '--prune', '--dry-run'));
    expect(dry.out).toContain('application "side": deleted (not in config, --prune)');
    expect((await status()).applications.map((a) => a.name).sort()).toEqual(['main', 'side']);

    const pruned = await shoalToEnd(deployArgs(file, '--prune'));
    expect(pruned.code).toBe(0);
    expect(pruned.out).toContain('application "side": deleted\n');
    expect(pruned.out).toContain('applied: 0 created, 0 updated, 1 unchanged, 1 deleted');
    expect((await status()).applications.map((a) => a.name)).toEqual(['main']);
    await waitFor('side replicas to stop', async () => (await status()).replicas.every((r) => r.app !== 'side'), 30_000);
    const after = await replicaIds();
    expect(after).toEqual({ 'main/Front': before['main/Front'], 'main/Model': before['main/Model'] });
  });

  it('refuses a bad file before it touches the cluster, naming the path', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, `applications:\n  - name: main\n    importPath: ${relative(dir, FIXTURE)}\n    routePrefix: /main\n    deployments:\n      - name: Modle\n`);
    const before = await replicaIds();
    const res = await shoalToEnd(deployArgs(bad));
    expect(res.code).toBe(2);
    expect(res.out).toContain(`${bad}: applications[0].deployments[0].name: app ${relative(dir, FIXTURE)} has no deployment "Modle" (deployments: Front, Model) (line 6, column 15)`);
    const flags = await shoalToEnd(deployArgs(bad, '--name', 'x'));
    expect(flags.code).toBe(1);
    expect(flags.out).toContain('--name: cannot be given with a config file');
    expect(await replicaIds()).toEqual(before);
  });

  it('--prune deletes first: new applications get the capacity the pruned ones held; a failed step says what was applied', async () => {
    // Two SideModel replicas of a whole worker's CPUs each: together they fill both workers.
    const cpus = (await status()).workers[0]!.resources.cpus;
    const big = await shoalToEnd(deployArgs(writeApps('big.yaml', '/main', [['big', '/big', cpus]])));
    expect(big.code, big.out).toBe(0);
    const swapped = await shoalToEnd(deployArgs(writeApps('big2.yaml', '/main', [['big2', '/big2', cpus]]), '--prune', '--wait', '30000'));
    expect(swapped.code, swapped.out).toBe(0);
    expect(swapped.out).toContain('applying, in this order:\n  1. delete application "big" (not in config, --prune)\n  2. application "big2": created\n');
    expect(swapped.out).toContain('applied: 1 created, 0 updated, 1 unchanged, 1 deleted');
    expect((await status()).applications.map((a) => a.name).sort()).toEqual(['big2', 'main']);

    // Without --prune big2 keeps its CPUs and big3 cannot be placed: the wait ends, and the output says what happened.
    const failed = await shoalToEnd(deployArgs(writeApps('big3.yaml', '/main', [['big2', '/big2', cpus], ['big3', '/big3', cpus]]), '--wait', '2000'));
    expect(failed.code).toBe(1);
    expect(failed.out).toMatch(/shoal: step 1 of 1 failed: application "big3": created: .+/);
    expect(failed.out).toContain('applied: nothing\nfailed:\n  1. application "big3": created\nnot applied: nothing else\n');
    expect(failed.out).not.toMatch(/^applied: \d/m);
  }, 90_000);

  it('swaps two route prefixes: --dry-run shows the order, one application parked with no route first; nothing restarts', async () => {
    const before = await replicaIds();
    const file = writeApps('swap.yaml', '/big2', [['big2', '/main', (await status()).workers[0]!.resources.cpus]]);
    const dry = await shoalToEnd(deployArgs(file, '--prune', '--dry-run'));
    expect(dry.code, dry.out).toBe(0);
    expect(dry.out).toContain([
      'would apply, in this order:',
      '  1. delete application "big3" (not in config, --prune)',
      '  2. application "main": no route prefix for now, so that "big2" can take "/main"',
      '  3. application "big2": updated (route prefix "/big2" -> "/main")',
      '  4. application "main": updated (route prefix "/main" -> "/big2")',
    ].join('\n'));
    const applied = await shoalToEnd(deployArgs(file, '--prune'));
    expect(applied.code, applied.out).toBe(0);
    expect(applied.out).toContain('application "main": no route prefix for now ("/main" is free)\n');
    expect(applied.out).toContain('applied: 0 created, 2 updated, 0 unchanged, 1 deleted');
    // main's Front answers with its Model's userConfig; big2's SideModel has none.
    await waitFor('the routes to follow the swap', async () => {
      const atBig2 = await (await fetch(`${http}/big2`)).json() as { config: unknown };
      const atMain = await (await fetch(`${http}/main`)).json() as { config: unknown };
      return JSON.stringify(atBig2.config) === '{"tag":"second"}' && atMain.config === null;
    }, 20_000);
    const after = await replicaIds();
    expect({ main: after['main/Model'], big2: after['big2/SideModel'] }).toEqual({ main: before['main/Model'], big2: before['big2/SideModel'] });
  });

  it('answers --help with the usage of the command', async () => {
    const deploy = await shoalToEnd(['deploy', '--help']);
    expect(deploy.code).toBe(0);
    expect(deploy.out).toMatch(/^usage: shoal deploy \[options\]\n {2}deploy APP\.ts/);
    expect(deploy.out).toContain('--prune');
    for (const args of [['config', '--help'], ['config', 'generate', '-h']]) {
      const r = await shoalToEnd(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.out).toMatch(/^usage: shoal config generate APP\.ts \[options\]\n/);
    }
    const status = await shoalToEnd(['status', '-h']);
    expect(status.code).toBe(0);
    expect(status.out).toMatch(/^usage: shoal status \[options\]\n {2}status /);
  });

  it('a .ts app in a package that is not "type": "module" fails before the import, naming the file and the fix', async () => {
    const project = join(dir, 'cjs-project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), '{ "name": "x", "version": "1.0.0", "type": "commonjs" }\n');
    writeFileSync(join(project, 'app.ts'), `import { deployment } from ${JSON.stringify(CORE)};\nclass A { fetch() { return 'hi'; } }\nexport default deployment(A).bind();\n`);
    const r = await shoalToEnd(['config', 'generate', join(project, 'app.ts')]);
    expect(r.code).toBe(1);
    expect(r.out).toBe(`shoal: cannot load ${join(project, 'app.ts')} as an ES module: ${join(project, 'package.json')} has "type": "commonjs", so Node loads it as CommonJS (npm init -y writes that). An app module is an ES module: run \`npm pkg set type=module\` in ${project}, or rename it to app.mts\n`);
    // The fix it names works.
    writeFileSync(join(project, 'package.json'), '{ "name": "x", "version": "1.0.0", "type": "module" }\n');
    const fixed = await shoalToEnd(['config', 'generate', join(project, 'app.ts')]);
    expect(fixed.code, fixed.out).toBe(0);
    expect(fixed.out).toContain('  - name: default\n');
  });
});
