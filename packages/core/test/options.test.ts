import { describe, expect, it } from 'vitest';
import { compileDeploymentOptions, InvalidOptionError, type DeploymentOptions } from '../src/index.ts';
import { errorFor } from './option-error.ts';


describe('compileDeploymentOptions', () => {
  it('fills every default', () => {
    expect(compileDeploymentOptions({}, 'Model')).toEqual({
      name: 'Model', numReplicas: 1, maxOngoingRequests: 100, maxQueuedRequests: 1000, maxRequestBytes: 16 * 1024 * 1024,
      requestTimeoutMs: 0, resources: { cpus: 1, gpus: 0, memory: 0, gpuMemory: 0, sharedBlobs: [], device: 'cuda' }, userConfig: undefined,
      healthCheckPeriodMs: 10_000, healthCheckTimeoutMs: 30_000, gracefulShutdownTimeoutMs: 20_000, autoscaling: undefined, idempotentMethods: [],
      rollout: { maxSurge: '25%', maxUnavailable: 0, maxFailures: 3, shadow: undefined, canary: undefined, experiment: undefined },
    });
  });

  it('fills the rollout phases\' defaults, and the compiled form recompiles to itself', () => {
    const c = compileDeploymentOptions({ rollout: { shadow: {}, canary: {} } }, 'M');
    expect(c.rollout.shadow).toEqual({ percent: 100, minComparisons: 100, minDurationMs: 0, minAgreement: undefined, maxMeanAbsDiff: undefined, maxAbsDiff: undefined, maxErrorRate: 0.01 });
    expect(c.rollout.canary).toEqual({ steps: [10, 50], stepIntervalMs: 30_000, minRequests: 100, maxErrorRateIncrease: 0.01, maxP99Increase: 0.5, p99FloorMs: 5 });
    expect(compileDeploymentOptions(c as never, 'M')).toEqual(c);
    const e = compileDeploymentOptions({ rollout: { experiment: { header: 'X-User', stats: { alpha: 0.01 } } } }, 'M').rollout.experiment;
    expect(e).toEqual({ name: undefined, header: 'x-user', percent: 50, metric: 'conversion', stats: { alpha: 0.01 } });
  });

  it.each<[string, unknown, string, string]>([
    ['maxSurge and maxUnavailable both 0', { maxSurge: 0, maxUnavailable: '0%' }, 'deployment.rollout.maxSurge', 'cannot both be 0'],
    ['a percent over 100', { maxSurge: '150%' }, 'deployment.rollout.maxSurge', "a percent such as '25%'"],
    ['steps not increasing', { canary: { steps: [50, 10] } }, 'deployment.rollout.canary.steps[1]', 'must be above the step before it (50)'],
    ['a step of 0', { canary: { steps: [0] } }, 'deployment.rollout.canary.steps[0]', 'must be > 0'],
    ['an experiment with a canary', { canary: {}, experiment: {} }, 'deployment.rollout.experiment', 'cannot be combined with shadow or canary'],
    ['an experiment at 100%', { experiment: { percent: 100 } }, 'deployment.rollout.experiment.percent', 'must be below 100'],
    ['a bad header', { experiment: { header: 'x user' } }, 'deployment.rollout.experiment.header', 'must be an HTTP header name'],
    ['an unknown key', { canary: { step: [10] } }, 'deployment.rollout.canary.step', 'is not an option here'],
    ['minAgreement over 1', { shadow: { minAgreement: 2 } }, 'deployment.rollout.shadow.minAgreement', 'must be <= 1'],
  ])('refuses rollout with %s, naming the option', (_name, rollout, path, problem) => {
    let err: unknown;
    try { compileDeploymentOptions({ rollout } as never, 'M'); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toContain(problem);
  });

  it('keeps the values it is given', () => {
    const c = compileDeploymentOptions({ name: 'm2', numReplicas: 3, maxOngoingRequests: 8, resources: { cpus: 0.5, gpus: 0.25, memory: 1 << 30 }, userConfig: { a: 1 } }, 'Model');
    expect(c).toMatchObject({ name: 'm2', numReplicas: 3, maxOngoingRequests: 8, resources: { cpus: 0.5, gpus: 0.25, memory: 1 << 30 }, userConfig: { a: 1 } });
    expect(compileDeploymentOptions({ resources: { gpus: 2 } }, 'M').resources.gpus).toBe(2);
    const dev = compileDeploymentOptions({ resources: { gpuMemory: 1 << 20, sharedBlobs: [{ name: 'tower/base', bytes: 4096 }], device: 'host' } }, 'M').resources;
    expect(dev).toMatchObject({ gpuMemory: 1 << 20, sharedBlobs: [{ name: 'tower/base', bytes: 4096 }], device: 'host' });
  });

  // numReplicas 0 is accepted on purpose: the controller supports scaling a deployment to zero.
  it('accepts numReplicas 0', () => {
    expect(compileDeploymentOptions({ numReplicas: 0 }, 'M').numReplicas).toBe(0);
  });

  it.each<[string, DeploymentOptions | Record<string, unknown>, string, string]>([
    ['numReplicas -1', { numReplicas: -1 }, 'deployment.numReplicas', 'must be between 0 and 10000 (got -1)'],
    ['numReplicas 1.5', { numReplicas: 1.5 }, 'deployment.numReplicas', 'must be an integer (got 1.5)'],
    ['numReplicas "2"', { numReplicas: '2' }, 'deployment.numReplicas', 'must be an integer (got "2")'],
    ['numReplicas NaN', { numReplicas: Number.NaN }, 'deployment.numReplicas', 'must be an integer'],
    ['maxOngoingRequests 0', { maxOngoingRequests: 0 }, 'deployment.maxOngoingRequests', 'must be between 1 and'],
    ['maxQueuedRequests -1', { maxQueuedRequests: -1 }, 'deployment.maxQueuedRequests', 'must be between 0 and'],
    ['requestTimeoutMs 1.5', { requestTimeoutMs: 1.5 }, 'deployment.requestTimeoutMs', 'must be an integer'],
    ['healthCheckPeriodMs 0', { healthCheckPeriodMs: 0 }, 'deployment.healthCheckPeriodMs', 'must be between 1 and'],
    ['resources.gpus -1', { resources: { gpus: -1 } }, 'deployment.resources.gpus', 'must be >= 0 (got -1)'],
    ['resources.gpus 1.5', { resources: { gpus: 1.5 } }, 'deployment.resources.gpus', 'above 1 must be a whole number (got 1.5)'],
    ['resources.gpus Infinity', { resources: { gpus: Infinity } }, 'deployment.resources.gpus', 'must be a finite number'],
    ['resources.cpus -0.5', { resources: { cpus: -0.5 } }, 'deployment.resources.cpus', 'must be >= 0'],
    ['resources.memory 1.5', { resources: { memory: 1.5 } }, 'deployment.resources.memory', 'must be an integer'],
    ['resources 5', { resources: 5 }, 'deployment.resources', 'must be an object (got 5)'],
    ['an unknown resource', { resources: { tpus: 1 } }, 'deployment.resources.tpus', 'is not a resource (cpus, gpus, memory, gpuMemory, sharedBlobs, device)'],
    ['resources.gpuMemory -1', { resources: { gpuMemory: -1 } }, 'deployment.resources.gpuMemory', 'must be between 0 and'],
    ['resources.gpuMemory 1.5', { resources: { gpuMemory: 1.5 } }, 'deployment.resources.gpuMemory', 'must be an integer'],
    ['resources.sharedBlobs {}', { resources: { sharedBlobs: {} } }, 'deployment.resources.sharedBlobs', 'must be an array'],
    ['a shared blob without a name', { resources: { sharedBlobs: [{ bytes: 1 }] } }, 'deployment.resources.sharedBlobs[0].name', 'must be a non-empty string'],
    ['a shared blob listed twice', { resources: { sharedBlobs: [{ name: 'b', bytes: 1 }, { name: 'b', bytes: 1 }] } }, 'deployment.resources.sharedBlobs[1].name', 'is listed twice'],
    ['a shared blob of -1 bytes', { resources: { sharedBlobs: [{ name: 'b', bytes: -1 }] } }, 'deployment.resources.sharedBlobs[0].bytes', 'must be between 0 and'],
    ['resources.device "tpu"', { resources: { device: 'tpu' } }, 'deployment.resources.device', "must be 'cuda' or 'host'"],
    ['an unknown key', { numReplica: 2 }, 'deployment.numReplica', 'is not a deployment option'],
    ['another unknown key', { replicas: 2, name: 'ok' }, 'deployment.replicas', 'is not a deployment option'],
    ['a bad name', { name: '1abc' }, 'deployment.name', 'must be 1-128 characters'],
    ['an empty name', { name: '' }, 'deployment.name', 'must be 1-128 characters'],
  ])('rejects %s, naming the option', (_what, input, path, problem) => {
    const err = errorFor(input);
    expect(err.code).toBe('ERR_INVALID_OPTION');
    expect(err.httpStatus).toBe(400);
    expect(err.message).toContain(`invalid option ${path}: `);
    expect(err.message).toContain(problem);
    expect(err.details).toEqual({ path });
  });

  it('rejects a non-object', () => {
    expect(errorFor(null).message).toContain('invalid option deployment: must be an object');
    expect(errorFor(5).message).toContain('invalid option deployment: must be an object');
  });

  it('names the full path given by the caller', () => {
    let err: unknown;
    try { compileDeploymentOptions({ numReplicas: -1 }, 'M', 'app.deployments.Model'); } catch (e) { err = e; }
    expect((err as Error).message).toContain('invalid option app.deployments.Model.numReplicas');
  });
});
