import { describe, expect, it } from 'vitest';
import { buildAppSpec, compileDeploymentOptions, deployment, InvalidOptionError, validateAppSpec, type AppSpec, type DeploymentOptions } from '../src/index.ts';
import type { AutoscalingOptions } from '../src/options.ts';
import { errorFor } from './option-error.ts';


const auto = (autoscaling: AutoscalingOptions | Record<string, unknown>): DeploymentOptions => ({ autoscaling } as DeploymentOptions);

describe('autoscaling options', () => {
  it('are absent unless given', () => {
    expect(compileDeploymentOptions({}, 'M').autoscaling).toBeUndefined();
    expect(compileDeploymentOptions({ numReplicas: 3 }, 'M')).toMatchObject({ numReplicas: 3, autoscaling: undefined });
  });

  it('fill every default, and numReplicas becomes the initial count', () => {
    const c = compileDeploymentOptions({ autoscaling: {} }, 'M');
    expect(c.autoscaling).toEqual({
      minReplicas: 1, maxReplicas: 100, initialReplicas: 1, targetOngoingRequests: 2, upscaleDelayMs: 30_000, downscaleDelayMs: 600_000,
      downscaleToZeroDelayMs: 600_000, lookBackPeriodMs: 30_000, smoothingFactor: 1, upscaleSmoothingFactor: 1, downscaleSmoothingFactor: 1,
      downscaleTolerance: 0.1, metricsIntervalMs: 1000,
    });
    expect(c.numReplicas).toBe(1);
  });

  it('derive initialReplicas from minReplicas, and the delay to zero and the two smoothing factors from theirs', () => {
    const c = compileDeploymentOptions({ autoscaling: { minReplicas: 0, maxReplicas: 8, downscaleDelayMs: 5000, smoothingFactor: 0.5 } }, 'M');
    expect(c.numReplicas).toBe(0);
    expect(c.autoscaling).toMatchObject({ minReplicas: 0, initialReplicas: 0, downscaleToZeroDelayMs: 5000, upscaleSmoothingFactor: 0.5, downscaleSmoothingFactor: 0.5 });
  });

  it('keep the values they are given', () => {
    const given: Required<AutoscalingOptions> = {
      minReplicas: 2, maxReplicas: 6, initialReplicas: 4, targetOngoingRequests: 0.5, upscaleDelayMs: 0, downscaleDelayMs: 100, downscaleToZeroDelayMs: 7,
      lookBackPeriodMs: 2000, smoothingFactor: 0.3, upscaleSmoothingFactor: 2, downscaleSmoothingFactor: 0.8, downscaleTolerance: 0, metricsIntervalMs: 2000,
    };
    const c = compileDeploymentOptions({ autoscaling: given }, 'M');
    expect(c.autoscaling).toEqual(given);
    expect(c.numReplicas).toBe(4);
    expect(c.autoscaling).not.toBe(given);
  });

  it('accept numReplicas equal to the initial count, so the compiled form recompiles to itself', () => {
    const c = compileDeploymentOptions({ autoscaling: { minReplicas: 2, maxReplicas: 5, initialReplicas: 3 } }, 'M');
    expect(compileDeploymentOptions(c, 'M')).toEqual(c);
    expect(compileDeploymentOptions({ numReplicas: 2, autoscaling: { minReplicas: 2 } }, 'M').numReplicas).toBe(2);
  });

  it('round-trip through JSON and validateAppSpec unchanged', () => {
    class Model { predict(): number { return 1; } }
    const autoscaling = { minReplicas: 0, maxReplicas: 4, targetOngoingRequests: 3, downscaleToZeroDelayMs: 1000, upscaleSmoothingFactor: 1.5 };
    const app = deployment(Model, { autoscaling }).bind();
    const spec = JSON.parse(JSON.stringify(buildAppSpec(app, { name: 'a', routePrefix: '/', modulePath: '/srv/app.ts', exportName: 'default' }))) as AppSpec;
    const checked = validateAppSpec(spec);
    expect(checked.deployments[0]!.options).toEqual(compileDeploymentOptions({ autoscaling }, 'Model'));
    expect(checked.deployments[0]!.options.autoscaling).toMatchObject({ ...autoscaling, initialReplicas: 0, downscaleSmoothingFactor: 1 });
    expect(checked.deployments[0]!.options.numReplicas).toBe(0);
  });

  it('carry into withOptions, where numReplicas must then be dropped', () => {
    class Model { predict(): number { return 1; } }
    const fixed = deployment(Model, { numReplicas: 3 });
    expect(() => fixed.withOptions({ autoscaling: {} })).toThrow(/invalid option deployment\.numReplicas: must be left out with autoscaling/);
    expect(fixed.withOptions({ numReplicas: undefined, autoscaling: { initialReplicas: 2 } }).options).toMatchObject({ numReplicas: 2, autoscaling: { initialReplicas: 2 } });
  });

  it.each<[string, DeploymentOptions, string, string]>([
    ['numReplicas with autoscaling', { numReplicas: 3, autoscaling: {} }, 'deployment.numReplicas', 'must be left out with autoscaling, which sets the count (starting at autoscaling.initialReplicas, 1 here) (got 3)'],
    ['autoscaling null', auto(null as never), 'deployment.autoscaling', 'must be an object (got null)'],
    ['autoscaling true', auto(true as never), 'deployment.autoscaling', 'must be an object (got true)'],
    ['autoscaling []', auto([] as never), 'deployment.autoscaling', 'must be an object'],
    ['an unknown autoscaling key', auto({ targetNumOngoingRequestsPerReplica: 2 }), 'deployment.autoscaling.targetNumOngoingRequestsPerReplica', 'is not an autoscaling option (minReplicas, maxReplicas,'],
    ['minReplicas -1', auto({ minReplicas: -1 }), 'deployment.autoscaling.minReplicas', 'must be between 0 and 10000 (got -1)'],
    ['minReplicas 1.5', auto({ minReplicas: 1.5 }), 'deployment.autoscaling.minReplicas', 'must be an integer (got 1.5)'],
    ['maxReplicas 0', auto({ minReplicas: 0, maxReplicas: 0 }), 'deployment.autoscaling.maxReplicas', 'must be between 1 and 10000 (got 0)'],
    ['maxReplicas "4"', auto({ maxReplicas: '4' }), 'deployment.autoscaling.maxReplicas', 'must be an integer (got "4")'],
    ['min above max', auto({ minReplicas: 5, maxReplicas: 4 }), 'deployment.autoscaling.minReplicas', 'must be at most maxReplicas (4) (got 5)'],
    ['min above the default max', auto({ minReplicas: 101 }), 'deployment.autoscaling.minReplicas', 'must be at most maxReplicas (100) (got 101)'],
    ['initial below min', auto({ minReplicas: 2, maxReplicas: 4, initialReplicas: 1 }), 'deployment.autoscaling.initialReplicas', 'must be between minReplicas (2) and maxReplicas (4) (got 1)'],
    ['initial above max', auto({ maxReplicas: 4, initialReplicas: 5 }), 'deployment.autoscaling.initialReplicas', 'must be between minReplicas (1) and maxReplicas (4) (got 5)'],
    ['target 0', auto({ targetOngoingRequests: 0 }), 'deployment.autoscaling.targetOngoingRequests', 'must be > 0 (got 0)'],
    ['target -1', auto({ targetOngoingRequests: -1 }), 'deployment.autoscaling.targetOngoingRequests', 'must be > 0 (got -1)'],
    ['target NaN', auto({ targetOngoingRequests: Number.NaN }), 'deployment.autoscaling.targetOngoingRequests', 'must be a finite number'],
    ['upscaleDelayMs -1', auto({ upscaleDelayMs: -1 }), 'deployment.autoscaling.upscaleDelayMs', 'must be between 0 and'],
    ['downscaleDelayMs 0.5', auto({ downscaleDelayMs: 0.5 }), 'deployment.autoscaling.downscaleDelayMs', 'must be an integer (got 0.5)'],
    ['downscaleToZeroDelayMs -5', auto({ downscaleToZeroDelayMs: -5 }), 'deployment.autoscaling.downscaleToZeroDelayMs', 'must be between 0 and'],
    ['lookBackPeriodMs 0', auto({ lookBackPeriodMs: 0 }), 'deployment.autoscaling.lookBackPeriodMs', 'must be between 1 and'],
    ['metricsIntervalMs 0', auto({ metricsIntervalMs: 0 }), 'deployment.autoscaling.metricsIntervalMs', 'must be between 1 and'],
    ['a window shorter than the sampling interval', auto({ lookBackPeriodMs: 500, metricsIntervalMs: 1000 }), 'deployment.autoscaling.lookBackPeriodMs', 'must be at least metricsIntervalMs (1000), or a window can hold no sample (got 500)'],
    ['smoothingFactor 0', auto({ smoothingFactor: 0 }), 'deployment.autoscaling.smoothingFactor', 'must be > 0 (got 0)'],
    ['upscaleSmoothingFactor 0', auto({ upscaleSmoothingFactor: 0 }), 'deployment.autoscaling.upscaleSmoothingFactor', 'must be > 0 (got 0)'],
    ['downscaleSmoothingFactor Infinity', auto({ downscaleSmoothingFactor: Infinity }), 'deployment.autoscaling.downscaleSmoothingFactor', 'must be a finite number'],
    ['downscaleSmoothingFactor 1.5', auto({ downscaleSmoothingFactor: 1.5 }), 'deployment.autoscaling.downscaleSmoothingFactor', 'must be at most 1: a scale-down never goes below the count the load needs (got 1.5)'],
    ['downscaleTolerance 1', auto({ downscaleTolerance: 1 }), 'deployment.autoscaling.downscaleTolerance', 'must be below 1 (got 1)'],
    ['downscaleTolerance -0.1', auto({ downscaleTolerance: -0.1 }), 'deployment.autoscaling.downscaleTolerance', 'must be >= 0 (got -0.1)'],
    ['smoothingFactor 2 that also sets the downscale one', auto({ smoothingFactor: 2 }), 'deployment.autoscaling.smoothingFactor', 'must be at most 1 while it also sets downscaleSmoothingFactor'],
  ])('reject %s, naming the option', (_what, input, path, problem) => {
    const err = errorFor(input);
    expect(err.code).toBe('ERR_INVALID_OPTION');
    expect(err.httpStatus).toBe(400);
    expect(err.message).toContain(`invalid option ${path}: `);
    expect(err.message).toContain(problem);
    expect(err.details).toEqual({ path });
  });

  it('accept a smoothingFactor above 1 when the downscale one is its own', () => {
    expect(compileDeploymentOptions({ autoscaling: { smoothingFactor: 2, downscaleSmoothingFactor: 1 } }, 'M').autoscaling).toMatchObject({ upscaleSmoothingFactor: 2, downscaleSmoothingFactor: 1 });
  });

  it('name the full path given by validateAppSpec', () => {
    class Model { predict(): number { return 1; } }
    const spec = JSON.parse(JSON.stringify(buildAppSpec(deployment(Model, { autoscaling: {} }).bind(), { name: 'a', routePrefix: '/', modulePath: '/m.ts', exportName: 'default' }))) as AppSpec;
    (spec.deployments[0]!.options.autoscaling as unknown as Record<string, unknown>).initialReplicas = 500;
    let err: unknown;
    try { validateAppSpec(spec); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as Error).message).toBe('invalid option app.deployments[0].options.autoscaling.initialReplicas: must be between minReplicas (1) and maxReplicas (100) (got 500)');
  });
});
