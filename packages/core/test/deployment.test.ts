import { describe, expect, it } from 'vitest';
import {
  Application, buildAppSpec, Deployment, deployment, DeployError, InvalidOptionError, type Handle,
} from '../src/index.ts';

class Model {
  constructor(readonly scale = 2) {}
  predict(x: number): number { return x * this.scale; }
  init(): void {}
  checkHealth(): void {}
  reconfigure(_c: unknown): void {}
  shutdown(): void {}
}

class Ingress {
  constructor(readonly model: Handle<Model>, readonly prefix: string) {}
  async fetch(): Promise<string> { return `${this.prefix}${await this.model.predict(1)}`; }
}

function double(x: number): number { return x * 2; }

describe('deployment()', () => {
  it('wraps a class: kind "class", its own constructor, its name as default', () => {
    const d = deployment(Model, { numReplicas: 2 });
    expect(Deployment.isDeployment(d)).toBe(true);
    expect(d.kind).toBe('class');
    expect(d.factory).toBe(Model);
    expect(d.options.name).toBe('Model');
    expect(d.options.numReplicas).toBe(2);
    expect(new d.factory(3).predict(2)).toBe(6);
  });

  it('wraps a function as a class with one method, call', () => {
    const d = deployment(double, { name: 'doubler' });
    expect(d.kind).toBe('function');
    expect(d.options.name).toBe('doubler');
    const instance = new d.factory();
    expect(instance.call(21)).toBe(42);
    expect(deployment(double).options.name).toBe('double');
    expect(deployment((x: number) => x).options.name).toMatch(/^[A-Za-z_]/);
  });

  it('compiles options when declared, so a bad option fails at the declaration', () => {
    expect(() => deployment(Model, { numReplicas: -1 })).toThrow(InvalidOptionError);
    expect(() => deployment(Model, { numReplicas: -1 })).toThrow('deployment.numReplicas');
    expect(() => deployment(42 as unknown as () => void)).toThrow('invalid option deployment(target): must be a class or a function');
  });

  it('withOptions replaces some options and keeps the rest', () => {
    const d = deployment(Model, { numReplicas: 2, maxOngoingRequests: 4 }).withOptions({ numReplicas: 5 });
    expect(d.options).toMatchObject({ name: 'Model', numReplicas: 5, maxOngoingRequests: 4 });
    expect(() => d.withOptions({ maxOngoingRequests: 0 })).toThrow('deployment.maxOngoingRequests');
  });

  it('bind builds a graph whose spec lists deployments, dependencies and handle methods (no lifecycle hooks)', () => {
    const model = deployment(Model, { numReplicas: 3 }).bind(4);
    const app = deployment(Ingress, { name: 'api' }).bind(model, '> ');
    expect(Application.isApplication(app)).toBe(true);
    expect(app.args).toEqual([model, '> ']);
    const spec = buildAppSpec(app, { name: 'demo', routePrefix: '/demo', modulePath: '/x/app.ts', exportName: 'default' });
    expect(spec.ingress).toBe('api');
    expect(spec.deployments.map((d) => [d.name, d.kind, d.dependencies, d.methods])).toEqual([
      ['api', 'class', ['Model'], ['fetch']],
      ['Model', 'class', [], ['predict']],
    ]);
    expect(spec.deployments[1]!.options.numReplicas).toBe(3);
    const fn = buildAppSpec(deployment(double).bind(), { name: 'f', routePrefix: null, modulePath: '/x', exportName: 'default' });
    expect(fn.deployments[0]).toMatchObject({ name: 'double', kind: 'function', methods: ['call'] });
  });

  it('refuses two different deployments with one name, a non-application, and a bad prefix', () => {
    const a = deployment(Model, { name: 'same' }).bind();
    const b = deployment(double, { name: 'same' }).bind();
    const root = deployment(Ingress).bind(a as never, '');
    expect(() => buildAppSpec(deployment(Ingress).bind(a as never, b as never), { name: 'x', routePrefix: '/', modulePath: '/m', exportName: 'default' })).toThrow(DeployError);
    expect(() => buildAppSpec({} as Application, { name: 'x', routePrefix: '/', modulePath: '/m', exportName: 'app' })).toThrow('export "app" of /m is not an application');
    expect(() => buildAppSpec(root, { name: 'x', routePrefix: 'nope', modulePath: '/m', exportName: 'default' })).toThrow('invalid option routePrefix');
    expect(() => buildAppSpec(root, { name: 'bad name', routePrefix: '/', modulePath: '/m', exportName: 'default' })).toThrow('invalid option app.name');
  });
});
