import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { assertModuleFile, buildAppSpec, compileDeploymentOptions, deployment, InvalidOptionError, validateAppSpec, type AppSpec } from '../src/index.ts';

class Model { predict(x: number): number { return x * 2; } }
class Front { constructor(readonly model: unknown) {} fetch(): string { return 'ok'; } }

/** A spec as the CLI builds it, after the JSON round trip of the control API. */
function goodSpec(): AppSpec {
  const app = deployment(Front).bind(deployment(Model, { numReplicas: 2 }).bind());
  const spec = buildAppSpec(app, { name: 'shop', routePrefix: '/shop', modulePath: '/srv/app.ts', exportName: 'default' });
  return JSON.parse(JSON.stringify(spec)) as AppSpec;
}

/** The message of the InvalidOptionError that validateAppSpec throws for `spec` changed by `edit` (typed loosely: edits break its shape on purpose). */
function errorFor(edit: (spec: Record<string, any>) => void): string {
  const spec = goodSpec() as unknown as Record<string, any>;
  edit(spec);
  let err: unknown;
  try { validateAppSpec(spec); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(InvalidOptionError);
  expect((err as InvalidOptionError).code).toBe('ERR_INVALID_OPTION');
  expect((err as InvalidOptionError).httpStatus).toBe(400);
  return (err as Error).message;
}

describe('validateAppSpec', () => {
  it('accepts what buildAppSpec makes, unchanged, as a new object', () => {
    const spec = goodSpec();
    const checked = validateAppSpec(spec);
    expect(checked).toEqual(spec);
    expect(checked).not.toBe(spec);
    expect(checked.deployments[0]!.options).not.toBe(spec.deployments[0]!.options);
  });

  it('compiles options as deployment() does, filling the defaults a hand-written spec left out', () => {
    const spec = goodSpec() as unknown as { deployments: Array<{ name: string; options: unknown }> };
    const model = spec.deployments.find((d) => d.name === 'Model')!;
    model.options = { numReplicas: 3, resources: { gpus: 0.5 } };
    const checked = validateAppSpec(spec);
    expect(checked.deployments.find((d) => d.name === 'Model')!.options).toEqual(compileDeploymentOptions({ numReplicas: 3, resources: { gpus: 0.5 } }, 'Model'));
  });

  it.each<[string, (s: Record<string, any>) => void, string]>([
    ['a bad option of the second deployment', (s) => { s.deployments[1].options.maxOngoingRequests = 0; }, 'invalid option app.deployments[1].options.maxOngoingRequests: must be between 1 and 9007199254740991 (got 0)'],
    ['a bad nested resource', (s) => { s.deployments[0].options.resources.gpus = 1.5; }, 'invalid option app.deployments[0].options.resources.gpus: above 1 must be a whole number (got 1.5)'],
    ['an unknown option', (s) => { s.deployments[1].options.maxOngoing = 5; }, 'invalid option app.deployments[1].options.maxOngoing: is not a deployment option'],
    ['options that are not an object', (s) => { s.deployments[0].options = 'fast'; }, 'invalid option app.deployments[0].options: must be an object (got "fast")'],
    ['options naming another deployment', (s) => { s.deployments[0].options.name = 'Other'; }, 'invalid option app.deployments[0].options.name: must equal the deployment\'s name'],
    ['an ingress that names no deployment', (s) => { s.ingress = 'Nope'; }, 'invalid option app.ingress: must name one of the deployments (Front, Model) (got "Nope")'],
    ['a route prefix without a slash', (s) => { s.routePrefix = 'shop'; }, 'invalid option app.routePrefix: must be null or a string starting with "/" (got "shop")'],
    ['a bad app name', (s) => { s.name = 'has space'; }, 'invalid option app.name'],
    ['an app name that is not a string', (s) => { s.name = 7; }, 'invalid option app.name: must be a string (got 7)'],
    ['a module path that is not a string', (s) => { s.modulePath = 42; }, 'invalid option app.modulePath: must be a non-empty string (got 42)'],
    ['a missing module path', (s) => { delete s.modulePath; }, 'invalid option app.modulePath: is required'],
    ['a data: URL module', (s) => { s.modulePath = 'data:text/javascript,process.exit(1)'; }, 'invalid option app.modulePath: must be an absolute file path or a file: URL, not a data: URL (got "data:text/javascript,process.exit(1)")'],
    ['an https: URL module', (s) => { s.modulePath = 'https://example.com/app.js'; }, 'invalid option app.modulePath: must be an absolute file path or a file: URL, not a https: URL (got "https://example.com/app.js")'],
    ['a node: builtin module', (s) => { s.modulePath = 'node:child_process'; }, 'not a node: URL (got "node:child_process")'],
    ['a relative module path', (s) => { s.modulePath = './app.ts'; }, 'invalid option app.modulePath: must be an absolute file path or a file: URL, not a relative path or a package name (got "./app.ts")'],
    ['a bare package name', (s) => { s.modulePath = 'some-package'; }, 'not a relative path or a package name (got "some-package")'],
    ['a file: URL with a host', (s) => { s.modulePath = 'file://elsewhere/srv/app.ts'; }, 'invalid option app.modulePath: is not a usable file: URL'],
    ['an empty export name', (s) => { s.exportName = ''; }, 'invalid option app.exportName: must be a non-empty string (got "")'],
    ['no deployments', (s) => { s.deployments = []; }, 'invalid option app.deployments: must be a non-empty array (got array(0))'],
    ['a deployment that is not an object', (s) => { s.deployments[1] = null; }, 'invalid option app.deployments[1]: must be an object (got null)'],
    ['two deployments of one name', (s) => { s.deployments[1].name = 'Front'; s.deployments[1].options.name = 'Front'; }, 'invalid option app.deployments[1].name: is also the name of deployments[0] (got "Front")'],
    ['a bad deployment kind', (s) => { s.deployments[0].kind = 'lambda'; }, 'invalid option app.deployments[0].kind: must be \'class\' or \'function\' (got "lambda")'],
    ['methods that are not an array', (s) => { s.deployments[1].methods = 'predict'; }, 'invalid option app.deployments[1].methods: must be an array of strings (got "predict")'],
    ['a method that is not a string', (s) => { s.deployments[1].methods = ['predict', 3]; }, 'invalid option app.deployments[1].methods[1]: must be a non-empty string (got 3)'],
    ['a dependency on no deployment', (s) => { s.deployments[0].dependencies = ['Model', 'Ghost']; }, 'invalid option app.deployments[0].dependencies[1]: names no deployment of this application (got "Ghost")'],
    ['an unknown app field', (s) => { s.replicas = 3; }, 'invalid option app.replicas: is not a field here'],
    ['an unknown deployment field', (s) => { s.deployments[0].numReplicas = 3; }, 'invalid option app.deployments[0].numReplicas: is not a field here'],
    ['an oip block without a model', (s) => { s.deployments[1].oip = { version: '1', platform: 'onnxruntime_onnx' }; }, 'invalid option app.deployments[1].oip.model: is required (a non-empty string)'],
  ])('refuses %s, naming its path and value', (_what, edit, message) => {
    expect(errorFor(edit)).toContain(message);
  });

  it('refuses what is not an object at all', () => {
    for (const raw of [null, [], 'spec', 3]) {
      expect(() => validateAppSpec(raw)).toThrow(InvalidOptionError);
      expect(() => validateAppSpec(raw)).toThrow(/^invalid option app: must be an object/);
    }
  });

  it('keeps a valid oip block', () => {
    const spec = goodSpec() as unknown as Record<string, any>;
    spec.deployments[1].oip = { model: 'mlp', version: '1', platform: 'onnxruntime_onnx' };
    expect((validateAppSpec(spec).deployments[1] as unknown as { oip: unknown }).oip).toEqual({ model: 'mlp', version: '1', platform: 'onnxruntime_onnx' });
  });
});

describe('module paths', () => {
  it('accepts an absolute path and a file: URL', () => {
    for (const modulePath of ['/srv/app.ts', 'file:///srv/app.ts']) {
      const spec = goodSpec();
      expect(validateAppSpec({ ...spec, modulePath }).modulePath).toBe(modulePath);
    }
  });

  it('assertModuleFile passes a regular file, by path or file: URL, and names app.modulePath otherwise', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-app-spec-'));
    const file = join(dir, 'app.ts');
    writeFileSync(file, 'export default 1;\n');
    await expect(assertModuleFile(file)).resolves.toBeUndefined();
    await expect(assertModuleFile(pathToFileURL(file).href)).resolves.toBeUndefined();
    const missing = join(dir, 'missing.ts');
    await expect(assertModuleFile(missing)).rejects.toThrow(`invalid option app.modulePath: no such file on the head (got "${missing}")`);
    await expect(assertModuleFile(dir)).rejects.toThrow('invalid option app.modulePath: is not a regular file');
    await expect(assertModuleFile('/dev/null')).rejects.toThrow('is not a regular file');
    await expect(assertModuleFile('data:text/javascript,1')).rejects.toBeInstanceOf(InvalidOptionError);
  });
});
