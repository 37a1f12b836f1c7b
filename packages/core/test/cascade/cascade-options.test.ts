import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { cascade, compileCascadeOptions, registerCascadeMetrics, type CascadeInstance, type CascadeOptions } from '../../src/cascade/index.ts';
import { buildAppSpec, deployment, type Handle } from '../../src/deployment.ts';
import { InvalidOptionError } from '../../src/errors.ts';
import { FakeHandle, Model } from './fakes.ts';

const small = deployment(Model, { name: 'small' }).bind();
const large = deployment(Model, { name: 'large' }).bind();
const base = { small, large, method: 'predict', confidence: (a: { score: number }) => a.score, threshold: 0.8 };

function rejects(extra: Record<string, unknown>, option: string): void {
  const opts = { ...base, ...extra } as unknown as CascadeOptions;
  let err: unknown;
  try { compileCascadeOptions(opts); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(InvalidOptionError);
  expect((err as Error).message).toContain(`invalid option ${option}:`);
}

describe('cascade options', () => {
  it('fills the defaults', () => {
    const c = compileCascadeOptions(base as unknown as CascadeOptions);
    expect(c).toMatchObject({
      name: 'cascade', method: 'predict', threshold: 0.8, confidenceRange: [0, 1], auditSampleRate: 0, agree: undefined, onSmallError: 'escalate',
      smallTimeoutMs: 0, envelope: false, auditTimeoutMs: 30_000, maxConcurrentAudits: 8, deployment: {},
    });
  });

  it('names the option in every refusal', () => {
    rejects({ threshold: undefined }, 'cascade.threshold');
    rejects({ threshold: 1.2 }, 'cascade.threshold');
    rejects({ threshold: Number.NaN }, 'cascade.threshold');
    rejects({ threshold: 120, confidenceRange: [0, 100], auditSampleRate: 0 }, 'cascade.threshold');
    rejects({ confidenceRange: [1, 0] }, 'cascade.confidenceRange');
    rejects({ confidenceRange: [0, 'x'] }, 'cascade.confidenceRange[1]');
    rejects({ auditSampleRate: 1.5, agree: () => true }, 'cascade.auditSampleRate');
    rejects({ auditSampleRate: -0.1 }, 'cascade.auditSampleRate');
    rejects({ auditSampleRate: 0.1 }, 'cascade.agree');
    rejects({ confidence: undefined }, 'cascade.confidence');
    rejects({ confidence: 0.5 }, 'cascade.confidence');
    rejects({ agree: 'yes' }, 'cascade.agree');
    rejects({ small: deployment(Model) }, 'cascade.small');
    rejects({ large: undefined }, 'cascade.large');
    rejects({ method: 'shutdown' }, 'cascade.method');
    rejects({ method: 'fetch' }, 'cascade.method');
    rejects({ method: 'cascadeStats' }, 'cascade.method');
    rejects({ method: '_secret' }, 'cascade.method');
    rejects({ name: 'small' }, 'cascade.name');
    rejects({ name: 'has space' }, 'cascade.name');
    rejects({ onSmallError: 'retry' }, 'cascade.onSmallError');
    rejects({ smallTimeoutMs: -1 }, 'cascade.smallTimeoutMs');
    rejects({ auditTimeoutMs: 0 }, 'cascade.auditTimeoutMs');
    rejects({ maxConcurrentAudits: 0 }, 'cascade.maxConcurrentAudits');
    rejects({ envelope: 'yes' }, 'cascade.envelope');
    rejects({ deployment: { name: 'x' } }, 'cascade.deployment.name');
    rejects({ deployment: { multiplex: {} } }, 'cascade.deployment.multiplex');
    rejects({ thresold: 0.8 }, 'cascade.thresold');
  });

  it('compiles the generated deployment\'s options under cascade.deployment', () => {
    expect(() => cascade({ ...base, small: deployment(Model, { name: 'small' }).bind(), deployment: { numReplicas: -1 } } as never)).toThrow('invalid option cascade.deployment.numReplicas');
    const app = cascade({ ...base, name: 'classify', deployment: { numReplicas: 3, maxOngoingRequests: 7 } } as never) as { deployment: { options: { name: string; numReplicas: number; maxOngoingRequests: number } } };
    expect(app.deployment.options).toMatchObject({ name: 'classify', numReplicas: 3, maxOngoingRequests: 7 });
  });

  it('is an application graph: the cascade is the ingress, with both models as dependencies and its method listed', () => {
    const app = cascade({ name: 'classify', small, large, method: 'predict', confidence: (a) => a.score, threshold: 0.5 });
    const spec = buildAppSpec(app, { name: 'c', routePrefix: '/', modulePath: '/x.ts', exportName: 'default' });
    expect(spec.ingress).toBe('classify');
    const node = spec.deployments.find((d) => d.name === 'classify')!;
    expect(node.dependencies.sort()).toEqual(['large', 'small']);
    expect(node.methods).toEqual(['cascadeStats', 'fetch', 'predict']);
    expect(spec.deployments.map((d) => d.name).sort()).toEqual(['classify', 'large', 'small']);
  });

  it('types the method, its arguments and its answer from the models', async () => {
    const app = cascade({ small, large, method: 'predict', confidence: (a, x) => a.score + x * 0, threshold: 0.5 });
    const Factory = app.deployment.factory as unknown as new (s: FakeHandle, l: FakeHandle) => CascadeInstance<'predict', [number], { label: string; score: number }>;
    const inst = new Factory(new FakeHandle((x) => ({ label: 'a', score: x })), new FakeHandle(() => ({ label: 'b', score: 1 })));
    const answer: { label: string } = await inst.predict(0.7);
    expect(answer.label).toBe('a');
    // @ts-expect-error predict takes a number
    void (() => inst.predict('x'));
  });

  it('binds into another deployment as a handle of the cascade', () => {
    const app = cascade({ name: 'classify', small, large, method: 'predict', confidence: (a) => a.score, threshold: 0.5 });
    class Front {
      constructor(readonly c: Handle<CascadeInstance<'predict', [number], { label: string; score: number }>>) {}
      async fetch(): Promise<unknown> { return { label: (await this.c.predict(0.5)).label, stats: (await this.c.cascadeStats()).requests }; }
    }
    const spec = buildAppSpec(deployment(Front).bind(app), { name: 'c', routePrefix: '/', modulePath: '/x.ts', exportName: 'default' });
    expect(spec.ingress).toBe('Front');
    expect(spec.deployments.find((d) => d.name === 'Front')!.dependencies).toEqual(['classify']);
  });

  it('registers its Prometheus series once per registry', () => {
    const registry = new Registry();
    const a = registerCascadeMetrics(registry);
    const b = registerCascadeMetrics(registry);
    a.close();
    b.close();
    b.close();
    expect(registry.getMetricsAsArray()).toHaveLength(0);
  });
});
