import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { DeployError, InvalidOptionError, NotFoundError } from '@shoal/core';
import {
  compileModelConfig, deploymentOptionsFor, poolOptionsFor, scanModel, scanModelRepository, selectVersions,
} from '../src/index.ts';

let root: string;
beforeEach(() => { root = mkdtempSync(join(tmpdir(), 'shoal-repo-')); });
afterEach(() => rmSync(root, { recursive: true, force: true }));

function put(rel: string, content: string | Uint8Array = 'onnx'): void {
  const path = join(root, rel);
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, content);
}

describe('selectVersions', () => {
  test('latest-N, all, specific', () => {
    expect(selectVersions([1, 2, 3, 10], { latest: 2 })).toEqual([10, 3]);
    expect(selectVersions([1], { latest: 3 })).toEqual([1]);
    expect(selectVersions([1, 2, 3], { all: true })).toEqual([3, 2, 1]);
    expect(selectVersions([1, 2, 3], { specific: [1, 3] })).toEqual([3, 1]);
    expect(() => selectVersions([1, 2], { specific: [3] }, 'm')).toThrow(/model "m": versionPolicy.specific asks for version\(s\) 3, but only 1, 2 exist/);
  });
});

describe('compileModelConfig', () => {
  test('defaults', () => {
    expect(compileModelConfig(undefined)).toEqual({
      numReplicas: 1, resources: { cpus: 1, gpus: 0, memory: 0 }, batching: undefined,
      threads: { sessions: 1, intraOp: undefined, interOp: 1, spinning: false, nice: 0 }, executionProviders: ['cpu'], warmup: true,
      versionPolicy: { latest: 1 }, modelFile: 'model.onnx',
    });
    expect(compileModelConfig({ batching: true }).batching).toEqual({ maxBatchSize: 8, maxWaitMs: 5, preferredBatchSizes: [] });
    expect(compileModelConfig({ batching: { maxBatchSize: 32, preferredBatchSizes: [16, 4] } }).batching).toEqual({ maxBatchSize: 32, maxWaitMs: 5, preferredBatchSizes: [4, 16] });
  });

  test('every bad value names the file and key path', () => {
    const bad = (raw: unknown, re: RegExp): void => {
      let err: unknown;
      try { compileModelConfig(raw, '/r/m/config.json:'); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(InvalidOptionError);
      expect((err as Error).message).toMatch(re);
    };
    bad({ numReplica: 2 }, /\/r\/m\/config\.json: \(top level\)\.numReplica: is not a known key/);
    bad({ numReplicas: -1 }, /config\.json: numReplicas: must be between 0 and/);
    bad({ batching: { maxBatchSize: 4, preferredBatchSizes: [8] } }, /batching\.preferredBatchSizes\[0\]: must be between 1 and 4/);
    bad({ batching: { maxWaitMs: 'soon' } }, /batching\.maxWaitMs: must be a finite number/);
    bad({ threads: { intraOp: 0 } }, /threads\.intraOp: must be between 1/);
    bad({ threads: { cores: 2 } }, /threads\.cores: is not a known key/);
    bad({ threads: { nice: 20 } }, /threads\.nice: must be between 0 and 19/);
    bad({ resources: { gpu: 1 } }, /resources\.gpu: is not a known key/);
    bad({ executionProviders: ['tensorrt'] }, /executionProviders\[0\]: must be "cpu" or "cuda"/);
    bad({ versionPolicy: { latest: 0 } }, /versionPolicy\.latest: must be between 1/);
    bad({ versionPolicy: { latest: 1, all: true } }, /versionPolicy: must have exactly one of latest, all, specific/);
    bad({ versionPolicy: { specific: [] } }, /versionPolicy\.specific: must list at least one version/);
    bad({ warmup: { runs: 0 } }, /config\.json: warmup\.runs: must be >= 1/);
    bad({ modelFile: '../x.onnx' }, /modelFile: must be a file name without directories/);
    bad([1], /must be an object/);
  });
});

describe('scanModelRepository', () => {
  test('finds models and versions, applies the version policy, reads config', async () => {
    put('mlp/1/model.onnx');
    put('mlp/2/model.onnx');
    put('mlp/10/model.onnx');
    put('mlp/config.json', JSON.stringify({ numReplicas: 3, versionPolicy: { latest: 2 }, threads: { sessions: 2, intraOp: 1 }, batching: { maxBatchSize: 16 }, resources: { cpus: 2 } }));
    put('rec/1/weights.onnx');
    put('rec/config.json', JSON.stringify({ modelFile: 'weights.onnx' }));
    put('README.md', '# models');
    put('.cache/x', '');
    const scan = await scanModelRepository(root);
    expect(scan.failed).toEqual([]);
    expect(scan.models.map((m) => m.name)).toEqual(['mlp', 'rec']);
    const mlp = scan.models[0]!;
    expect(mlp.available).toEqual([1, 2, 10]);
    expect(mlp.versions).toEqual([{ version: 10, path: join(root, 'mlp/10/model.onnx') }, { version: 2, path: join(root, 'mlp/2/model.onnx') }]);
    expect(mlp.configPath).toBe(join(root, 'mlp/config.json'));
    expect(mlp.config.numReplicas).toBe(3);
    expect(poolOptionsFor(mlp, mlp.versions[0]!, { loadTimeoutMs: 5000 })).toMatchObject({
      model: join(root, 'mlp/10/model.onnx'), name: 'mlp', threads: 2, intraOpThreads: 1, interOpThreads: 1, loadTimeoutMs: 5000, warmup: true,
    });
    expect(deploymentOptionsFor(mlp, mlp.versions[1]!)).toEqual({ name: 'mlp.v2', numReplicas: 3, resources: { cpus: 2, gpus: 0, memory: 0 } });
    const rec = scan.models[1]!;
    expect(rec.configPath).toBe(join(root, "rec/config.json"));
    expect(rec.versions[0]!.path).toBe(join(root, 'rec/1/weights.onnx'));
    expect(deploymentOptionsFor(rec, rec.versions[0]!).name).toBe('rec');
  });

  test('bad models are reported with the reason and do not hide good ones', async () => {
    put('good/1/model.onnx');
    mkdirSync(join(root, 'empty'));
    put('typo/v1/model.onnx');
    put('nofile/1/model.onx');
    put('badjson/1/model.onnx');
    put('badjson/config.json', '{ "numReplicas": 2, }');
    put('badcfg/1/model.onnx');
    put('badcfg/config.json', JSON.stringify({ batching: { maxBatchSize: 0 } }));
    put('spec/1/model.onnx');
    put('spec/config.json', JSON.stringify({ versionPolicy: { specific: [1, 2] } }));
    put('9lives/1/model.onnx');
    const scan = await scanModelRepository(root);
    expect(scan.models.map((m) => m.name)).toEqual(['good']);
    const why = Object.fromEntries(scan.failed.map((f) => [f.name, f.error.message]));
    expect(Object.keys(why).sort()).toEqual(['9lives', 'badcfg', 'badjson', 'empty', 'nofile', 'spec', 'typo']);
    expect(why.empty).toMatch(/model "empty" in .+ has no version directories \(it is empty\); expected .+empty\/1\/model\.onnx/);
    expect(why.typo).toMatch(/has no version directories \(found only: v1\)/);
    expect(why.nofile).toMatch(/model "nofile" version 1: .+nofile\/1\/model\.onnx is missing \(the directory holds model\.onx; set "modelFile"/);
    expect(why.badjson).toMatch(/badjson\/config\.json: not valid JSON/);
    expect(why.badcfg).toMatch(/badcfg\/config\.json: batching\.maxBatchSize: must be between 1/);
    expect(why.spec).toMatch(/asks for version\(s\) 2, but only 1 exist/);
    expect(why['9lives']).toMatch(/model directory name/);
    for (const f of scan.failed) expect(f.error).toBeInstanceOf(f.name === 'badcfg' || f.name === '9lives' ? InvalidOptionError : DeployError);
  });

  test('a missing repository or model is NotFoundError; a file is not a repository', async () => {
    await expect(scanModelRepository(join(root, 'nope'))).rejects.toBeInstanceOf(NotFoundError);
    await expect(scanModelRepository(join(root, 'nope'))).rejects.toThrow(/model repository .+nope does not exist/);
    put('file', 'x');
    await expect(scanModelRepository(join(root, 'file'))).rejects.toThrow(/is not a directory/);
    put('a/1/model.onnx');
    await expect(scanModel(root, 'b')).rejects.toThrow(/model "b" is not in repository .+ \(models: a\)/);
    expect((await scanModel(root, 'a')).versions).toHaveLength(1);
  });
});
