import { describe, expect, it } from 'vitest';
import { DEFAULT_SLO_WINDOW_MS, InvalidOptionError, compileDeploymentOptions, compileSlo, type DeploymentOptions } from '../src/index.ts';

function refusal(slo: unknown): InvalidOptionError {
  try {
    compileDeploymentOptions({ slo } as DeploymentOptions, 'api', 'deployments.api');
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError);
    return err as InvalidOptionError;
  }
  throw new Error(`slo ${JSON.stringify(slo)} was accepted`);
}

describe('slo options', () => {
  it('compiles latency and availability objectives with the default 30 day period, and recompiles to itself', () => {
    const c = compileDeploymentOptions({ slo: { latency: { p99: 200, p50: 20 }, availability: 0.999 } }, 'api');
    expect(c.slo).toEqual({ latency: { p50: 20, p99: 200 }, availability: 0.999, windowMs: DEFAULT_SLO_WINDOW_MS });
    expect(compileSlo(c.slo, 'x')).toEqual(c.slo);
    expect(compileDeploymentOptions(c as DeploymentOptions, 'api').slo).toEqual(c.slo);
    expect(compileDeploymentOptions({}, 'api').slo).toBeUndefined();
  });

  it('reads the period as ms or as a duration string', () => {
    expect(compileSlo({ availability: 0.99, window: '7d' }, 's').windowMs).toBe(7 * 86_400_000);
    expect(compileSlo({ availability: 0.99, window: '12h' }, 's').windowMs).toBe(12 * 3_600_000);
    expect(compileSlo({ availability: 0.99, window: '90m' }, 's').windowMs).toBe(90 * 60_000);
    expect(compileSlo({ availability: 0.99, window: 7_200_000 }, 's').windowMs).toBe(7_200_000);
    expect(compileSlo({ availability: 0.99, windowMs: 7_200_000 }, 's').windowMs).toBe(7_200_000);
  });

  it('names the option path and the bad value in every refusal', () => {
    expect(refusal({ latency: { p99: -5 } }).message).toMatch(/deployments\.api\.slo\.latency\.p99: must be a positive number of milliseconds \(got -5\)/);
    expect(refusal({ latency: { p99: '200ms' } }).message).toMatch(/deployments\.api\.slo\.latency\.p99: must be a positive number of milliseconds/);
    expect(refusal({ latency: { p99: 0.01 } }).message).toMatch(/deployments\.api\.slo\.latency\.p99: must be at least 0\.1 ms/);
    expect(refusal({ latency: { p99: 1e9 } }).message).toMatch(/deployments\.api\.slo\.latency\.p99: must be at most \d+ ms/);
    expect(refusal({ latency: { p90: 100 } }).message).toMatch(/deployments\.api\.slo\.latency\.p90: is not a latency objective \(p50, p95, p99, p999\)/);
    expect(refusal({ latency: 200 }).message).toMatch(/deployments\.api\.slo\.latency: must be an object/);
    expect(refusal({ availability: 1 }).message).toMatch(/deployments\.api\.slo\.availability: must be a fraction strictly between 0 and 1 \(.*\) \(got 1\)/);
    expect(refusal({ availability: 99.9 }).message).toMatch(/deployments\.api\.slo\.availability: must be a fraction/);
    expect(refusal({ availability: 0 }).message).toMatch(/deployments\.api\.slo\.availability/);
    expect(refusal({ availability: 0.99, window: '30 days' }).message).toMatch(/deployments\.api\.slo\.window: must be ms or a duration such as '30d'/);
    expect(refusal({ availability: 0.99, window: '10m' }).message).toMatch(/deployments\.api\.slo\.window: must be at least 1h/);
    expect(refusal({ availability: 0.99, window: '1000d' }).message).toMatch(/deployments\.api\.slo\.window: must be at most 400d/);
    expect(refusal({ availability: 0.99, window: '2d', windowMs: 7_200_000 }).message).toMatch(/deployments\.api\.slo\.window: and windowMs name the same period/);
    expect(refusal({ availability: 0.99, budget: 1 }).message).toMatch(/deployments\.api\.slo\.budget: is not an SLO option/);
    expect(refusal({}).message).toMatch(/deployments\.api\.slo: declares no objective/);
    expect(refusal({ latency: {} }).message).toMatch(/deployments\.api\.slo: declares no objective/);
    expect(refusal('99.9%').message).toMatch(/deployments\.api\.slo: must be an object/);
    expect(refusal({ latency: { p99: -5 } }).details?.path).toBe('deployments.api.slo.latency.p99');
  });
});
