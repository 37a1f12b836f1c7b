/**
 * The config file: schema errors with their exact paths and lines, YAML syntax errors with their position, core's
 * option rules applied to the file's overrides with the file's paths, unknown deployments, how overrides meet the
 * code's options, the diff against a running cluster's specs, and generate -> load round trips.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { buildAppSpec, moduleCodeHash, validateAppSpec, type AppSpec, type Application } from '@shoal/core';
import { deploymentVersion } from '@shoal/head';
import { ConfigError } from '../src/config/errors.ts';
import { parseConfig, splitImportPath } from '../src/config/schema.ts';
import { loadConfig } from '../src/config/load.ts';
import { canonical, formatPlan, planConfig } from '../src/config/diff.ts';
import { generateConfig } from '../src/config/generate.ts';
import { formatSteps, orderSteps } from '../src/config/order.ts';

const FIXTURE = resolve(import.meta.dirname, 'fixtures/config/app.ts');
const HELLO = resolve(import.meta.dirname, '../../../examples/hello/app.ts');

let dir: string;
beforeEach(() => { dir = mkdtempSync(join(tmpdir(), 'shoal-config-')); });
afterEach(() => { rmSync(dir, { recursive: true, force: true }); });

/** The ConfigError message parsing `text` throws. */
function parseError(text: string): string {
  try {
    parseConfig(text, 'config.yaml', dir);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message;
  }
  throw new Error('parsed without an error');
}

/** Writes `text` as config.yaml in the test's directory and loads it; the ConfigError message, or the config. */
async function loadError(text: string): Promise<string> {
  const file = join(dir, 'config.yaml');
  writeFileSync(file, text);
  try {
    await loadConfig(file);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).message.replaceAll(file, 'config.yaml');
  }
  throw new Error('loaded without an error');
}

/** The fixture module as a path relative to the test's directory, as a config file there would write it. */
const fixtureImport = (): string => relative(dir, FIXTURE);

async function specOf(module: string, exportName = 'default', name = 'default', routePrefix: string | null = '/'): Promise<AppSpec> {
  const mod = await import(module) as Record<string, unknown>;
  return buildAppSpec(mod[exportName] as Application, { name, routePrefix, modulePath: module, exportName });
}

describe('config schema', () => {
  it('names the path, the expectation and the value, with the line', () => {
    expect(parseError([
      'applications:',
      '  - name: hello',
      '    importPath: ./app.ts',
      '    deployments:',
      '      - name: Api',
      '      - name: Model',
      '        numReplicas: two',
    ].join('\n'))).toBe('config.yaml: applications[0].deployments[1].numReplicas: expected a non-negative integer, got "two" (line 7, column 22)');
  });

  it('lists every problem of a file, each with its own path', () => {
    const msg = parseError([
      'applications:',
      '  - name: hello',
      '    routePrefix: api',
      '    deployments:',
      '      - name: Model',
      '        numReplica: 2',
      '        maxOngoingRequests: 0',
      '        resources: { cpus: -1, device: tpu }',
      '        autoscaling: { maxReplicas: 2.5 }',
      '        idempotentMethods: predict',
      'extra: 1',
    ].join('\n'));
    expect(msg.split('\n')).toEqual([
      'config.yaml: applications[0].importPath: is missing (expected a module path, ./app.ts or ./app.ts:exportName) (line 2, column 5)',
      'config.yaml: applications[0].routePrefix: expected a path starting with "/", or null for no HTTP route, got "api" (line 3, column 18)',
      'config.yaml: applications[0].deployments[0].maxOngoingRequests: expected a positive integer, got 0 (line 7, column 29)',
      'config.yaml: applications[0].deployments[0].resources.cpus: expected a number >= 0, got -1 (line 8, column 28)',
      "config.yaml: applications[0].deployments[0].resources.device: expected 'cuda' or 'host', got \"tpu\" (line 8, column 40)",
      'config.yaml: applications[0].deployments[0].idempotentMethods: expected a list, got "predict" (line 10, column 28)',
      'config.yaml: applications[0].deployments[0].autoscaling.maxReplicas: expected a positive integer, got 2.5 (line 9, column 37)',
      expect.stringMatching(/^config\.yaml: applications\[0\]\.deployments\[0\]\.numReplica: is not a field here \(fields: name, numReplicas, maxOngoingRequests, .*\) \(line 6, column 21\)$/),
      'config.yaml: extra: is not a field here (fields: applications, http) (line 11, column 8)',
    ]);
  });

  it('refuses an empty or non-object file, duplicate names and route prefixes, a bad app name', () => {
    expect(parseError('')).toBe('config.yaml: is empty (expected applications: [...])');
    expect(parseError('# nothing but a comment\n')).toBe('config.yaml: is empty (expected applications: [...])');
    expect(parseError('applications: []\n')).toBe('config.yaml: applications: expected at least one application, got a list (line 1, column 15)');
    expect(parseError('- a\n- b\n')).toBe('config.yaml: expected an object with applications: [...], got a list (line 1, column 1)');
    expect(parseError([
      'applications:',
      '  - { name: a, importPath: ./x.ts }',
      '  - { name: a, importPath: ./x.ts, routePrefix: /b }',
      '  - { name: "c d", importPath: ./x.ts, routePrefix: /b }',
      '  - { name: e, importPath: ./x.ts, routePrefix: null, deployments: [{ name: M }, { name: M }] }',
      '  - { name: f, importPath: ./x.ts, routePrefix: null }',
    ].join('\n')).split('\n')).toEqual([
      'config.yaml: applications[1].name: "a" is also the name of applications[0] (line 3, column 13)',
      'config.yaml: applications[2].name: expected 1-64 characters of letters, digits, _ . -, got "c d" (line 4, column 13)',
      'config.yaml: applications[2].routePrefix: route prefix "/b" is also that of applications[1] (line 4, column 53)',
      'config.yaml: applications[3].deployments[1].name: "M" is also listed at deployments[0] (line 5, column 90)',
    ]);
    // Two applications on the default prefix: the second one's name is where it is (it has no routePrefix line).
    expect(parseError('applications:\n  - { name: a, importPath: ./x.ts }\n  - { name: b, importPath: ./x.ts }\n'))
      .toBe('config.yaml: applications[1].name: route prefix "/" (the default) is also that of applications[0] (line 3, column 13)');
  });

  it('names the line and column of a YAML syntax error, and of a key given twice', () => {
    expect(parseError('applications:\n  - name: a\n    importPath: [./x.ts\n  - name: b\n')).toMatch(/^config\.yaml: YAML syntax error: .+ \(line \d+, column \d+\)$/m);
    // A key indented one column too far continues the line above: YAML says where that line's value began.
    expect(parseError('applications:\n  - name: a\n     importPath: ./x.ts\n').split('\n')[0])
      .toBe('config.yaml: YAML syntax error: Nested mappings are not allowed in compact mappings (line 2, column 11)');
    expect(parseError('applications:\n  - name: a\n    name: b\n    importPath: ./x.ts\n')).toBe('config.yaml: YAML syntax error: Map keys must be unique (line 3, column 5)');
  });

  it('reads JSON the same way, positions included; checks http', () => {
    expect(parseError('{\n  "applications": [\n    { "name": "a", "importPath": "./x.ts", "deployments": [{ "name": "M", "numReplicas": -1 }] }\n  ]\n}\n'))
      .toBe('config.yaml: applications[0].deployments[0].numReplicas: expected a non-negative integer, got -1 (line 3, column 90)');
    expect(parseError('applications:\n  - { name: a, importPath: ./x.ts }\nhttp: { port: 70000, tls: true }\n').split('\n')).toEqual([
      'config.yaml: http.port: expected a port, 0..65535, got 70000 (line 3, column 15)',
      'config.yaml: http.tls: is not a field here (fields: host, port) (line 3, column 27)',
    ]);
    expect(parseConfig('applications:\n  - { name: a, importPath: ./x.ts }\nhttp: { host: 0.0.0.0, port: 8080 }\n', 'c.yaml', dir).config.http).toEqual({ host: '0.0.0.0', port: 8080 });
  });

  it('splits an import path into the module and the export', () => {
    expect(splitImportPath('./app.ts')).toEqual({ module: './app.ts', exportName: 'default' });
    expect(splitImportPath('./app.ts:side')).toEqual({ module: './app.ts', exportName: 'side' });
    expect(splitImportPath('/abs/dir/app.ts:$x_1')).toEqual({ module: '/abs/dir/app.ts', exportName: '$x_1' });
    expect(splitImportPath('C:app.ts')).toEqual({ module: 'C:app.ts', exportName: 'default' });
    expect(parseConfig('applications:\n  - { name: a, importPath: "sub/app.ts:side" }\n', 'c.yaml', '/base').config.applications[0])
      .toMatchObject({ modulePath: '/base/sub/app.ts', exportName: 'side', routePrefix: '/', deployments: [] });
  });
});

describe('config loading', () => {
  it('names a deployment the app does not have, and the ones it has', async () => {
    const imp = fixtureImport();
    expect(await loadError([
      'applications:',
      '  - name: main',
      `    importPath: ${imp}`,
      '    deployments:',
      '      - name: Front',
      '        numReplicas: 1',
      '      - name: Model',
      '      - name: Modle',
    ].join('\n'))).toBe(`config.yaml: applications[0].deployments[2].name: app ${imp} has no deployment "Modle" (deployments: Front, Model) (line 8, column 15)`);
  });

  it("applies core's option rules to the overrides, naming the path in the file", async () => {
    const head = ['applications:', '  - name: main', `    importPath: ${fixtureImport()}`, '    deployments:', '      - name: Model'];
    expect(await loadError([...head, '        numReplicas: 20000'].join('\n')))
      .toBe('config.yaml: applications[0].deployments[0].numReplicas: must be between 0 and 10000 (got 20000) (line 6, column 22)');
    expect(await loadError([...head, '        autoscaling: { minReplicas: 5, maxReplicas: 2 }'].join('\n')))
      .toBe('config.yaml: applications[0].deployments[0].autoscaling.minReplicas: must be at most maxReplicas (2) (got 5) (line 6, column 37)');
    expect(await loadError([...head, '        rollout: { maxSurge: "x%" }'].join('\n')))
      .toMatch(/^config\.yaml: applications\[0\]\.deployments\[0\]\.rollout\.maxSurge: .*\(got "x%"\) \(line 6, column \d+\)$/);
    expect(await loadError([...head, '        rollout: { maxSurg: 1 }'].join('\n')))
      .toMatch(/^config\.yaml: applications\[0\]\.deployments\[0\]\.rollout\.maxSurg: /);
  });

  it('lists every unknown deployment and broken option rule of the file together, across applications', async () => {
    const imp = fixtureImport();
    expect((await loadError([
      'applications:',
      '  - name: main',
      `    importPath: ${imp}`,
      '    deployments:',
      '      - name: Modle',
      '      - name: Model',
      '        numReplicas: 20000',
      '  - name: scaled',
      `    importPath: ${imp}:scaled`,
      '    routePrefix: /scaled',
      '    deployments:',
      '      - name: ScaledModel',
      '        autoscaling: { minReplicas: 5, maxReplicas: 2 }',
      '  - name: gone',
      '    importPath: ./nope.ts',
      '    routePrefix: /gone',
    ].join('\n'))).split('\n')).toEqual([
      `config.yaml: applications[0].deployments[0].name: app ${imp} has no deployment "Modle" (deployments: Front, Model) (line 5, column 15)`,
      'config.yaml: applications[0].deployments[1].numReplicas: must be between 0 and 10000 (got 20000) (line 7, column 22)',
      'config.yaml: applications[1].deployments[0].autoscaling.minReplicas: must be at most maxReplicas (2) (got 5) (line 13, column 37)',
      `config.yaml: applications[2].importPath: no such file: ${join(dir, 'nope.ts')} (line 15, column 17)`,
    ]);
  });

  it('checks the well-formed applications of a file whose shape is wrong elsewhere: every problem at once', async () => {
    const imp = fixtureImport();
    expect((await loadError([
      'applications:',
      '  - name: main',
      `    importPath: ${imp}`,
      '    deployments:',
      '      - name: Modle',
      '  - name: side',
      `    importPath: "${imp}:side"`,
      '    routePrefix: /side',
      '    deployments:',
      '      - name: SideModel',
      '        numReplicas: two',
      '  - name: main',
      `    importPath: "${imp}:scaled"`,
      '    routePrefix: /scaled',
      'http: { port: x }',
    ].join('\n'))).split('\n')).toEqual([
      'config.yaml: applications[1].deployments[0].numReplicas: expected a non-negative integer, got "two" (line 11, column 22)',
      'config.yaml: http.port: expected a non-negative integer, got "x" (line 15, column 15)',
      'config.yaml: applications[2].name: "main" is also the name of applications[0] (line 12, column 11)',
      `config.yaml: applications[0].deployments[0].name: app ${imp} has no deployment "Modle" (deployments: Front, Model) (line 5, column 15)`,
    ]);
  });

  it('names a missing module, a missing export and an export that is no application', async () => {
    expect(await loadError('applications:\n  - { name: a, importPath: ./nope.ts }\n'))
      .toBe(`config.yaml: applications[0].importPath: no such file: ${join(dir, 'nope.ts')} (line 2, column 28)`);
    expect(await loadError(`applications:\n  - { name: a, importPath: "${fixtureImport()}:missing" }\n`))
      .toMatch(/^config\.yaml: applications\[0\]\.importPath: app\.ts has no export "missing" \(exports: Model, Front, default, side, scaled, notAnApp\) \(line 2, column 28\)$/);
    expect(await loadError(`applications:\n  - { name: a, importPath: "${fixtureImport()}:notAnApp" }\n`))
      .toBe('config.yaml: applications[0].importPath: export "notAnApp" of app.ts is not an application: call .bind() on a deployment (line 2, column 28)');
  });

  it('overrides only what the file sets, over the code; null goes back to the default; a count replaces autoscaling', async () => {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, [
      'applications:',
      '  - name: main',
      `    importPath: ${fixtureImport()}`,
      '    deployments:',
      '      - name: Model',
      '        numReplicas: 3',
      '        userConfig: { tag: file }',
      '        resources: null',
      `  - name: scaled`,
      `    importPath: ${fixtureImport()}:scaled`,
      '    routePrefix: /scaled',
      '    deployments:',
      '      - name: ScaledModel',
      '        numReplicas: 2',
    ].join('\n'));
    const loaded = await loadConfig(file);
    const code = await specOf(FIXTURE);
    const [main, scaled] = loaded.specs;
    expect(main!.modulePath).toBe(FIXTURE);
    expect(main!.deployments.find((d) => d.name === 'Front')!.options).toEqual(code.deployments.find((d) => d.name === 'Front')!.options);
    const model = main!.deployments.find((d) => d.name === 'Model')!.options;
    expect(model.numReplicas).toBe(3);
    expect(model.userConfig).toEqual({ tag: 'file' });
    expect(model.resources.cpus).toBe(1); // the code's { cpus: 0 } dropped: the default
    const sm = scaled!.deployments.find((d) => d.name === 'ScaledModel')!.options;
    expect(sm.autoscaling).toBeUndefined();
    expect(sm.numReplicas).toBe(2);
    expect(sm.idempotentMethods).toEqual(['info']); // what the code set and the file did not touch
    expect(scaled).toMatchObject({ name: 'scaled', routePrefix: '/scaled', exportName: 'scaled', ingress: 'ScaledFront' });
  });
});

describe('config diff', () => {
  const hashed = async (s: AppSpec): Promise<AppSpec> => ({ ...s, codeHash: await moduleCodeHash(s.modulePath) });

  it('unchanged, updated in place, updated with a new version, created and deleted deployments, not in config', async () => {
    const running = await hashed(await specOf(FIXTURE, 'default', 'main'));
    const side = await hashed(await specOf(FIXTURE, 'side', 'side', '/side'));
    expect(planConfig([running], [running, side], false)).toMatchObject({
      applications: [{ name: 'main', action: 'unchanged', deployments: [{ name: 'Front', action: 'unchanged' }, { name: 'Model', action: 'unchanged' }] }],
      notInConfig: ['side'], deleted: [],
    });
    // As the head holds it: through JSON and recompiled by validateAppSpec: still unchanged.
    const roundTripped = { ...validateAppSpec(JSON.parse(JSON.stringify(running))), codeHash: running.codeHash! };
    expect(planConfig([running], [roundTripped], false).applications[0]!.action).toBe('unchanged');

    const scale = (n: number, tag: string, maxOngoing?: number): AppSpec => ({
      ...running, deployments: running.deployments.map((d) => (d.name !== 'Model' ? d : { ...d, options: { ...d.options, numReplicas: n, userConfig: { tag }, ...(maxOngoing ? { maxOngoingRequests: maxOngoing } : {}) } })),
    });
    const live = planConfig([scale(3, 'new')], [running], true);
    expect(live.deleted).toEqual([]);
    expect(live.applications[0]).toMatchObject({ action: 'updated', deployments: [{ name: 'Front', action: 'unchanged' }, {
      name: 'Model', action: 'updated', fields: [{ field: 'numReplicas', from: 1, to: 3 }, { field: 'userConfig', from: { tag: 'code' }, to: { tag: 'new' } }],
    }] });
    expect(live.applications[0]!.deployments[1]!.newVersion).toBeUndefined();
    expect(formatPlan(live)).toBe([
      'application "main": updated',
      '  Front: unchanged',
      '  Model: updated: numReplicas 1 -> 3, userConfig {"tag":"code"} -> {"tag":"new"} (same version: no replica restarts)',
      '',
    ].join('\n'));

    const restart = planConfig([scale(1, 'code', 8)], [running, side], true);
    const model = restart.applications[0]!.deployments[1]!;
    expect(model.fields).toEqual([{ field: 'maxOngoingRequests', from: 100, to: 8 }]);
    expect(model.newVersion).toEqual({ from: deploymentVersion(running, running.deployments[1]!), to: expect.stringMatching(/^[0-9a-f]{12}$/) });
    expect(restart.deleted).toEqual(['side']);
    expect(formatPlan(restart)).toContain('application "side": deleted (not in config, --prune)');

    const grown = { ...running, deployments: [...running.deployments, { ...running.deployments[1]!, name: 'Extra', options: { ...running.deployments[1]!.options, name: 'Extra' } }] };
    expect(planConfig([grown], [running], false).applications[0]!.deployments.map((d) => `${d.name}:${d.action}`)).toEqual(['Front:unchanged', 'Model:unchanged', 'Extra:created']);
    expect(planConfig([running], [grown], false).applications[0]!.deployments.map((d) => `${d.name}:${d.action}`)).toEqual(['Front:unchanged', 'Model:unchanged', 'Extra:deleted']);
    expect(planConfig([{ ...running, codeHash: 'f'.repeat(64) }], [running], false).applications[0]).toMatchObject({
      action: 'updated', fields: [{ field: 'code' }], deployments: [{ action: 'updated', newVersion: {} }, { action: 'updated', newVersion: {} }],
    });
    expect(planConfig([running], [], false).applications[0]).toMatchObject({ action: 'created', deployments: [{ action: 'created' }, { action: 'created' }] });
  });
});

describe('config apply order', () => {
  const app = async (name: string, routePrefix: string | null): Promise<AppSpec> => ({ ...await specOf(FIXTURE, 'default', name, routePrefix), codeHash: await moduleCodeHash(FIXTURE) });
  /** Applications of the fixture, each `[name, routePrefix]`. */
  const apps = async (list: Array<[string, string]>): Promise<AppSpec[]> => { const out: AppSpec[] = []; for (const [name, prefix] of list) out.push(await app(name, prefix)); return out; };
  /** The steps that take the cluster from `running` to `wanted`, in the order `shoal deploy` applies them. */
  const stepsOf = (wanted: AppSpec[], running: AppSpec[], prune: boolean): ReturnType<typeof orderSteps> => orderSteps(planConfig(wanted, running, prune), running);

  it('deletes pruned applications first, frees a route prefix before another application takes it', async () => {
    const running = await apps([['old', '/x'], ['a', '/a'], ['b', '/b']]);
    // b moves to /c, then a can take /b; new takes /x once old is deleted, though the file lists it first.
    expect(formatSteps(stepsOf(await apps([['new', '/x'], ['a', '/b'], ['b', '/c']]), running, true))).toBe([
      '  1. delete application "old" (not in config, --prune)',
      '  2. application "new": created',
      '  3. application "b": updated (route prefix "/b" -> "/c")',
      '  4. application "a": updated (route prefix "/a" -> "/b")',
      '',
    ].join('\n'));
  });

  it('breaks a swap of route prefixes by parking one application with no route prefix first', async () => {
    const running = await apps([['a', '/a'], ['b', '/b'], ['c', '/c']]);
    const steps = stepsOf(await apps([['a', '/b'], ['b', '/a'], ['c', '/c']]), running, false);
    expect(formatSteps(steps)).toBe([
      '  1. application "a": no route prefix for now, so that "b" can take "/a"',
      '  2. application "b": updated (route prefix "/b" -> "/a")',
      '  3. application "a": updated (route prefix "/a" -> "/b")',
      '',
    ].join('\n'));
    // The parked spec is the running one with no route: same deployments, hence the same versions.
    const park = steps[0]!;
    expect(park.kind === 'park' && park.spec).toEqual({ ...running[0]!, routePrefix: null });
    // A three-way rotation needs one park too; the rest follow one another.
    const rotate = stepsOf(await apps([['a', '/b'], ['b', '/c'], ['c', '/a']]), running, false);
    expect(rotate.map((s) => `${s.kind} ${s.name}`)).toEqual(['park a', 'send c', 'send b', 'send a']);
  });
});

describe('config generate', () => {
  for (const [label, module, exportName] of [['examples/hello', HELLO, 'default'], ['an autoscaled fixture', FIXTURE, 'scaled']] as const) {
    it(`round-trips ${label}: the generated file deploys the options and versions the code declares`, async () => {
      const out = join(dir, 'sub', 'config.yaml');
      const text = await generateConfig(module, { exportName, name: 'gen', outFile: out });
      mkdirSync(join(dir, 'sub'));
      writeFileSync(out, text);
      expect(text).toContain(`importPath: ${relative(join(dir, 'sub'), module)}${exportName === 'default' ? '' : `:${exportName}`}`);
      const loaded = await loadConfig(out);
      const code = await specOf(module, exportName, 'gen');
      expect(loaded.specs).toHaveLength(1);
      const spec = loaded.specs[0]!;
      expect(spec.deployments.map((d) => d.name)).toEqual(code.deployments.map((d) => d.name));
      const codeHash = await moduleCodeHash(module);
      for (const d of code.deployments) {
        const got = spec.deployments.find((x) => x.name === d.name)!;
        expect(canonical(got.options)).toBe(canonical(d.options));
        expect(deploymentVersion({ ...spec, codeHash }, got)).toBe(deploymentVersion({ ...code, codeHash }, d));
      }
      // The file lists what differs from the defaults; the defaults are comments.
      const body = readFileSync(out, 'utf8');
      expect(body).toMatch(/# defaults:\n\s+# maxOngoingRequests: 100\n\s+# maxQueuedRequests: 1000\n/);
    });
  }

  it('writes what the code set, and for autoscaling no numReplicas', async () => {
    const text = await generateConfig(FIXTURE, { exportName: 'scaled', outFile: join(dir, 'config.yaml') });
    const parsed = parseConfig(text, 'config.yaml', dir).config.applications[0]!;
    const byName = Object.fromEntries(parsed.deployments.map((d) => [d.name, d.options]));
    expect(byName.ScaledFront).toEqual({ numReplicas: 1, maxOngoingRequests: 8, requestTimeoutMs: 5000, resources: { cpus: 0.5 } });
    expect(byName.ScaledModel).toEqual({
      userConfig: { nested: { list: [1, 2, 3], flag: true } },
      rollout: { maxSurge: 1 },
      idempotentMethods: ['info'],
      autoscaling: { maxReplicas: 4, initialReplicas: 2, targetOngoingRequests: 3, downscaleDelayMs: 2000 }, // minReplicas 1: the default
    });
  });
});
