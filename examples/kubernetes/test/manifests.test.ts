/**
 * The Kubernetes manifests and the Dockerfile, checked without a cluster or a Docker daemon:
 *  - every kustomization (base and each overlay) renders (kustomize.ts), and where kubectl exists the rendering
 *    deep-equals `kubectl kustomize`'s;
 *  - every rendered object validates against the Kubernetes JSON schemas (kubernetes-models; KEDA's ScaledObject
 *    with @kubernetes-models/keda); a kind with no model is an error;
 *  - what the objects mean holds in shoal: ports in the args are the probe and Service ports, addresses name
 *    Services that lead to those ports, the token Secret's key is the documented one, the autoscalers target the
 *    worker Deployment on documented metrics, the GPU overlay asks for one GPU per worker;
 *  - the worker, head (started after the worker, which waits for it) and deploy Job of the base, and of the redis
 *    overlay against a local redis-server, run here with the manifests' own args (ports and paths rewritten to free
 *    local ones): every probe path answers 200 on its port, the application answers on the worker's HTTP port, and
 *    SIGTERM to the head (what kubelet sends) stops only the head while the worker keeps serving and rejoins the next;
 *  - the Dockerfile's COPY sources and scripts exist, its entrypoint is the CLI's bin, its base images are pinned.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { parseConfig } from '../../../packages/cli/src/config/schema.ts';
import { ConfigError } from '../../../packages/cli/src/config/errors.ts';
import { env } from '@shoal/core';
import { freePort, waitFor } from '../../../test/helpers.ts';
import { httpStatus, ShoalProcesses } from '../../../test/fixtures/cli-process.ts';
import { redisServerAvailable, startRedisServer } from '../../../packages/head/test/redis-server.ts';
import { KustomizeError, podSpecOf, readYamlDocuments, render, type K8sObject } from './kustomize.ts';

const HERE = resolve(import.meta.dirname, '..');
const ROOT = resolve(HERE, '../..');
const OVERLAYS = readdirSync(join(HERE, 'overlays')).sort();
const DIRS = ['base', ...OVERLAYS.map((o) => `overlays/${o}`)];
const DOC = readFileSync(join(ROOT, 'docs/KUBERNETES.md'), 'utf8');
const METRICS_DOC = readFileSync(join(ROOT, 'docs/METRICS.md'), 'utf8');
/** What `shoal deploy CONFIG` exits with for a config it refuses, nothing applied (ConfigError.exitCode). */
const CONFIG_EXIT_CODE = new ConfigError('config.yaml', []).exitCode;

// ---------- what the objects hold, typed as far as these checks read them ----------
interface EnvVar { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string }; resourceFieldRef?: { resource: string; divisor?: string } } }
interface Probe { httpGet?: { path: string; port: string | number }; tcpSocket?: { port: string | number }; exec?: { command: string[] } }
interface Container {
  name: string; image: string; args?: string[]; command?: string[]; env?: EnvVar[];
  ports?: Array<{ name?: string; containerPort: number }>;
  startupProbe?: Probe; livenessProbe?: Probe; readinessProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  volumeMounts?: Array<{ name: string; mountPath: string }>;
}
interface PodSpec {
  containers: Container[]; terminationGracePeriodSeconds?: number; nodeSelector?: Record<string, string>;
  tolerations?: Array<{ key?: string }>; volumes?: Array<{ name: string; persistentVolumeClaim?: { claimName: string }; configMap?: { name: string } }>;
}
interface ServicePort { name?: string; port: number; targetPort?: string | number }

const byKind = (objs: K8sObject[], kind: string): K8sObject[] => objs.filter((o) => o.kind === kind);
function find(objs: K8sObject[], kind: string, name: string): K8sObject {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (o === undefined) throw new Error(`no ${kind}/${name} in the rendering (has: ${objs.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')})`);
  return o;
}
const pod = (o: K8sObject): PodSpec => podSpecOf(o) as unknown as PodSpec;
const podLabels = (o: K8sObject): Record<string, string> => ((o.spec as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels);
/** The containers running shoal (the image built from the Dockerfile, whatever an overlay renames it to). */
const shoalContainers = (objs: K8sObject[]): Array<{ owner: K8sObject; c: Container }> =>
  objs.flatMap((o) => (podSpecOf(o) === undefined ? [] : pod(o).containers.filter((c) => /(^|\/)shoal(-gpu)?(:|$)/.test(c.image)).map((c) => ({ owner: o, c }))));
const commandOf = (c: Container): string => c.args?.[0] ?? '';
function flag(c: Container, name: string): string | undefined {
  const args = c.args ?? [];
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
}
/** The head's and the workers' Deployments: found by the shoal command they run, not by name. */
const headOf = (objs: K8sObject[]): K8sObject => only(objs, 'start');
const workerOf = (objs: K8sObject[]): K8sObject => only(objs, 'worker');
function only(objs: K8sObject[], command: string): K8sObject {
  const hits = shoalContainers(objs).filter(({ c }) => commandOf(c) === command);
  if (hits.length !== 1) throw new Error(`expected one container running "shoal ${command}", found ${hits.length}`);
  return hits[0]!.owner;
}
function containerPort(c: Container, port: string | number): number {
  const p = typeof port === 'number' ? c.ports?.find((x) => x.containerPort === port) : c.ports?.find((x) => x.name === port);
  if (p === undefined) throw new Error(`container ${c.name} has no port ${port} (ports: ${JSON.stringify(c.ports)})`);
  return p.containerPort;
}
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);
/** The Service and container port a ws://HOST:PORT address reaches: HOST must be a Service that selects a pod. */
function resolveAddress(objs: K8sObject[], address: string): { owner: K8sObject; c: Container; containerPort: number } {
  const m = /^wss?:\/\/([^:/]+):(\d+)$/.exec(address);
  if (m === null) throw new Error(`address ${address} is not ws://HOST:PORT`);
  const svc = find(objs, 'Service', m[1]!);
  const spec = svc.spec as { selector: Record<string, string>; ports: ServicePort[] };
  const sp = spec.ports.find((p) => p.port === Number(m[2]));
  if (sp === undefined) throw new Error(`Service ${m[1]} has no port ${m[2]}`);
  const owners = objs.filter((o) => podSpecOf(o) !== undefined && o.kind !== 'Job' && selects(spec.selector, podLabels(o)));
  if (owners.length !== 1) throw new Error(`Service ${m[1]} selects ${owners.length} workloads`);
  const c = pod(owners[0]!).containers[0]!;
  return { owner: owners[0]!, c, containerPort: containerPort(c, sp.targetPort ?? sp.port) };
}
/** Metric names docs/METRICS.md documents in its tables. */
const documentedMetrics = new Set([...METRICS_DOC.matchAll(/^\| `(shoal_[a-z0-9_]+)` \|/gm)].map((m) => m[1]!));
const metricsIn = (query: string): string[] => [...query.matchAll(/\b(shoal_[a-z0-9_]+)\b/g)].map((m) => m[1]!);

function quantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G)?$/.exec(q);
  if (m === null) throw new Error(`quantity ${q} not understood`);
  const mult: Record<string, number> = { '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(m[1]) * mult[m[2] ?? '']!;
}

// ---------- schema validation ----------
type ModelClass = new (data: unknown) => { validate(): void };
const MODEL_MODULES: Record<string, () => Promise<Record<string, unknown>>> = {
  v1: () => import('kubernetes-models/v1'),
  'apps/v1': () => import('kubernetes-models/apps/v1'),
  'batch/v1': () => import('kubernetes-models/batch/v1'),
  'policy/v1': () => import('kubernetes-models/policy/v1'),
  'autoscaling/v2': () => import('kubernetes-models/autoscaling/v2'),
  'keda.sh/v1alpha1': () => import('@kubernetes-models/keda/keda.sh/v1alpha1'),
};
async function modelOf(o: K8sObject): Promise<ModelClass> {
  const load = MODEL_MODULES[o.apiVersion];
  if (load === undefined) throw new Error(`${o.kind}/${o.metadata.name}: apiVersion ${o.apiVersion} has no model here (known: ${Object.keys(MODEL_MODULES).join(', ')})`);
  const cls = (await load())[o.kind];
  if (typeof cls !== 'function') throw new Error(`${o.kind}/${o.metadata.name}: no ${o.apiVersion} ${o.kind} model`);
  return cls as ModelClass;
}

// ---------- kubectl, when this machine has it ----------
function kubectl(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir !== '' && existsSync(join(dir, 'kubectl'))) return join(dir, 'kubectl');
  return undefined;
}
const sortObjects = (objs: unknown[]): unknown[] => [...objs].sort((a, b) => {
  const id = (o: unknown): string => `${(o as K8sObject).kind}/${(o as K8sObject).metadata.name}`;
  return id(a) < id(b) ? -1 : id(a) > id(b) ? 1 : 0;
});

const rendered = new Map<string, K8sObject[]>();
beforeAll(() => {
  for (const d of DIRS) rendered.set(d, render(join(HERE, d)));
});
const objectsOf = (d: string): K8sObject[] => rendered.get(d)!;

describe('kustomize rendering', () => {
  it('finds the base and the four overlays', () => {
    expect(OVERLAYS).toEqual(['gpu', 'hpa', 'keda', 'redis']);
  });

  it.each(DIRS)('%s renders the same objects as kubectl kustomize', (d) => {
    const bin = kubectl();
    if (bin === undefined) {
      console.log(`kubectl not found on PATH: the cross-check of ${d} against kubectl kustomize was skipped`);
      return;
    }
    const out = execFileSync(bin, ['kustomize', join(HERE, d)], { encoding: 'utf8' });
    const theirs = parseAllDocuments(out).map((doc) => doc.toJS() as unknown).filter((x) => x !== null);
    expect(sortObjects(objectsOf(d))).toEqual(sortObjects(theirs));
  });

  it('refuses a kustomization field, a patch directive or a list merge it does not implement', () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-kustomize-'));
    try {
      writeFileSync(join(dir, 'cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: "1"\n');
      const kust = (extra: string): void => writeFileSync(join(dir, 'kustomization.yaml'), `apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - cm.yaml\n${extra}`);
      kust('namePrefix: x-\n');
      expect(() => render(dir)).toThrow(/field "namePrefix" is not implemented/);
      kust('configMapGenerator:\n  - name: g\n    files: [cm.yaml]\n');
      expect(() => render(dir)).toThrow(/disableNameSuffixHash must be true/);
      writeFileSync(join(dir, 'p.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n$patch: replace\n');
      kust('patches:\n  - path: p.yaml\n');
      expect(() => render(dir)).toThrow(/\$patch: replace is not implemented/);
      writeFileSync(join(dir, 'p.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  finalizers: [a]\n');
      expect(() => render(dir)).toThrow(/list \/metadata\/finalizers: its strategic-merge semantics are not implemented/);
      kust('patches:\n  - target: { version: v1, kind: ConfigMap, name: c }\n    patch: "[{op: move, from: /data/a, path: /data/b}]"\n');
      expect(() => render(dir)).toThrow(KustomizeError);
      expect(() => render(dir)).toThrow(/field "from" is not implemented|op "move" is not implemented/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('schemas', () => {
  it.each(DIRS)('every object of %s validates against its Kubernetes (or KEDA) schema', async (d) => {
    for (const o of objectsOf(d)) {
      const Model = await modelOf(o);
      expect(() => new Model(o).validate(), `${d}: ${o.kind}/${o.metadata.name}`).not.toThrow();
    }
  });

  it('a wrong type fails validation, and a kind with no model is an error', async () => {
    const head = structuredClone(headOf(objectsOf('base')));
    (pod(head).containers[0]!.ports![0] as { containerPort: unknown }).containerPort = 'seventy-four-fifty';
    const Model = await modelOf(head);
    expect(() => new Model(head).validate()).toThrow(/containerPort must be integer/);
    await expect(modelOf({ apiVersion: 'example.com/v1', kind: 'Thing', metadata: { name: 't' } })).rejects.toThrow(/has no model here/);
  });
});

describe('what the manifests mean in shoal', () => {
  const secret = /kubectl (?:-n \S+ )?create secret generic (\S+) --from-literal=([A-Za-z0-9_.-]+)=/.exec(DOC);

  it.each(DIRS)('%s: every shoal container reads SHOAL_TOKEN from the Secret and key docs/KUBERNETES.md creates', (d) => {
    expect(secret, 'docs/KUBERNETES.md shows `kubectl create secret generic NAME --from-literal=KEY=...`').not.toBeNull();
    const all = shoalContainers(objectsOf(d));
    expect(all.map(({ c }) => commandOf(c)).sort()).toEqual(['deploy', 'start', 'worker']);
    for (const { owner, c } of all) {
      const token = c.env?.find((e) => e.name === 'SHOAL_TOKEN');
      expect(token?.valueFrom?.secretKeyRef, `${owner.kind}/${owner.metadata.name}`).toEqual({ name: secret![1], key: secret![2] });
    }
    expect(byKind(objectsOf(d), 'Secret'), 'no token is committed').toHaveLength(0);
  });

  it.each(DIRS)('%s: probes, Services and addresses lead to the ports the args make shoal listen on', (d) => {
    const objs = objectsOf(d);
    const listenFlags = ['--port', '--http-port', '--data-port'];
    for (const { owner, c } of shoalContainers(objs)) {
      const where = `${owner.kind}/${owner.metadata.name}`;
      // Each declared port is one the args listen on, and each listening flag is declared.
      const listened = listenFlags.map((f) => flag(c, f)).filter((v): v is string => v !== undefined).map(Number);
      expect((c.ports ?? []).map((p) => p.containerPort).sort(), where).toEqual([...listened].sort());
      for (const probe of [c.startupProbe, c.livenessProbe, c.readinessProbe]) {
        if (probe === undefined) continue;
        expect(probe.httpGet, `${where}: probes are HTTP GETs on shoal's endpoints`).toBeDefined();
        expect(['/-/healthz', '/-/ready', '/-/ready/worker']).toContain(probe.httpGet!.path);
        expect(listened).toContain(containerPort(c, probe.httpGet!.port));
      }
      if (commandOf(c) !== 'start') {
        // Workers join, and the Job deploys to, a Service that leads to the head's --port.
        const target = resolveAddress(objs, flag(c, '--address')!);
        expect(commandOf(target.c)).toBe('start');
        expect(target.containerPort).toBe(Number(flag(target.c, '--port')));
      }
    }
    for (const svc of byKind(objs, 'Service')) {
      const spec = svc.spec as { selector: Record<string, string>; ports: ServicePort[] };
      const owners = objs.filter((o) => podSpecOf(o) !== undefined && o.kind !== 'Job' && selects(spec.selector, podLabels(o)));
      expect(owners, `Service ${svc.metadata.name} selects one workload`).toHaveLength(1);
      for (const p of spec.ports) containerPort(pod(owners[0]!).containers[0]!, p.targetPort ?? p.port);
    }
    for (const o of [...byKind(objs, 'Deployment'), ...byKind(objs, 'PodDisruptionBudget')]) {
      const sel = (o.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
      const targets = o.kind === 'Deployment' ? [o] : objs.filter((x) => x.kind === 'Deployment' && selects(sel, podLabels(x)));
      expect(targets.length, `${o.kind}/${o.metadata.name} selects its pods`).toBe(1);
      expect(selects(sel, podLabels(targets[0]!))).toBe(true);
    }
  });

  it.each(DIRS)('%s: no init container and no pod-level workarounds: shoal waits for the head and restarts on its lock by itself', (d) => {
    const objs = objectsOf(d);
    // A worker retries its first connection until the head answers (test/worker-first-connect.test.ts).
    expect((pod(workerOf(objs)) as PodSpec & { initContainers?: Container[] }).initContainers).toBeUndefined();
    // The file store's lock is taken over from a dead head in another pod or container (file-lock-takeover.test.ts).
    const head = pod(headOf(objs)) as PodSpec & { hostname?: string; shareProcessNamespace?: boolean };
    expect(head.hostname).toBeUndefined();
    expect(head.shareProcessNamespace).toBeUndefined();
  });

  it.each(DIRS)('%s: a worker pod is Ready on its own readiness, not the cluster\'s; the PDB lets unready pods be evicted', (d) => {
    const objs = objectsOf(d);
    const c = pod(workerOf(objs)).containers[0]!;
    // /-/ready is 503 while any deployment anywhere has no running replica (test/worker-readiness.test.ts): as the
    // pod's readiness it would take every worker out of the Service at once.
    expect(c.readinessProbe?.httpGet?.path).toBe('/-/ready/worker');
    for (const probe of [c.startupProbe, c.livenessProbe]) expect(probe?.httpGet?.path).toBe('/-/healthz');
    const pdbs = byKind(objs, 'PodDisruptionBudget');
    expect(pdbs).toHaveLength(1);
    expect((pdbs[0]!.spec as { unhealthyPodEvictionPolicy?: string }).unhealthyPodEvictionPolicy).toBe('AlwaysAllow');
  });

  it.each(DIRS)('%s: every pod and container meets Pod Security "restricted" (non-root, seccomp RuntimeDefault, no privilege escalation, no capabilities)', (d) => {
    interface SecurityContext { runAsNonRoot?: boolean; allowPrivilegeEscalation?: boolean; privileged?: boolean; capabilities?: { drop?: string[]; add?: string[] }; seccompProfile?: { type: string } }
    const pods = objectsOf(d).filter((o) => podSpecOf(o) !== undefined);
    expect(pods.length).toBeGreaterThan(0);
    for (const o of pods) {
      const spec = podSpecOf(o) as unknown as PodSpec & { securityContext?: SecurityContext; initContainers?: Container[]; hostNetwork?: boolean; hostPID?: boolean };
      const where = `${d}: ${o.kind}/${o.metadata.name}`;
      expect(spec.securityContext?.runAsNonRoot, where).toBe(true);
      expect(spec.securityContext?.seccompProfile, where).toEqual({ type: 'RuntimeDefault' });
      expect(spec.hostNetwork ?? false, where).toBe(false);
      expect(spec.hostPID ?? false, where).toBe(false);
      for (const v of spec.volumes ?? []) expect(Object.keys(v), `${where}: volume ${v.name}`).not.toContain('hostPath');
      for (const c of [...(spec.initContainers ?? []), ...spec.containers] as Array<Container & { securityContext?: SecurityContext }>) {
        const sc = c.securityContext;
        expect(sc, `${where}: container ${c.name}`).toBeDefined();
        expect(sc!.runAsNonRoot, `${where}: container ${c.name}`).toBe(true);
        expect(sc!.allowPrivilegeEscalation, `${where}: container ${c.name}`).toBe(false);
        expect(sc!.privileged ?? false, `${where}: container ${c.name}`).toBe(false);
        expect(sc!.capabilities?.drop, `${where}: container ${c.name}`).toEqual(['ALL']);
        expect(sc!.capabilities?.add ?? [], `${where}: container ${c.name}`).toEqual([]);
        expect(sc!.seccompProfile, `${where}: container ${c.name}`).toEqual({ type: 'RuntimeDefault' });
      }
    }
  });

  it.each(DIRS)('%s: the deploy Job fails at once on a bad config (exit 2), retries other failures, and goes away once finished', (d) => {
    const job = find(objectsOf(d), 'Job', 'shoal-deploy');
    const spec = job.spec as { backoffLimit: number; ttlSecondsAfterFinished?: number; podFailurePolicy?: { rules: Array<{ action: string; onExitCodes?: { containerName?: string; operator: string; values: number[] }; onPodConditions?: Array<{ type: string }> }> } };
    // A podFailurePolicy is only allowed with restartPolicy Never (the API server refuses it otherwise).
    expect(pod(job) as PodSpec & { restartPolicy?: string }).toMatchObject({ restartPolicy: 'Never' });
    expect(spec.backoffLimit).toBeGreaterThan(0);
    expect(spec.ttlSecondsAfterFinished).toBeGreaterThan(0);
    const failJob = spec.podFailurePolicy?.rules.find((r) => r.action === 'FailJob');
    expect(failJob?.onExitCodes).toEqual({ containerName: 'deploy', operator: 'In', values: [CONFIG_EXIT_CODE] });
    expect(pod(job).containers.map((c) => c.name)).toContain(failJob!.onExitCodes!.containerName);
    // An upgrade (a new image tag) changes the immutable pod template: the documented steps delete the Job first.
    expect(DOC).toContain('kubectl -n shoal delete job shoal-deploy --ignore-not-found');
  });

  it('the documented token is hex (a base64 "+" would become a space in the dashboard\'s ?token= query)', () => {
    const kust = readFileSync(join(HERE, 'base/kustomization.yaml'), 'utf8');
    for (const [file, text] of [['docs/KUBERNETES.md', DOC], ['base/kustomization.yaml', kust]] as const) {
      expect(text, file).not.toMatch(/openssl rand -base64/);
      expect(text, file).toMatch(/--from-literal=token="\$\(openssl rand -hex 32\)"/);
    }
  });

  it.each(DIRS)('%s: the head is one pod, replaced by Recreate, scraped on its control port; SIGTERM stops only the head', (d) => {
    const head = headOf(objectsOf(d));
    const spec = head.spec as { replicas: number; strategy: { type: string }; template: { metadata: { annotations: Record<string, string> } } };
    expect(spec.replicas).toBe(1);
    expect(spec.strategy.type).toBe('Recreate');
    const c = pod(head).containers[0]!;
    expect(flag(c, '--workers')).toBe('0');
    const ann = spec.template.metadata.annotations;
    expect(ann['prometheus.io/port']).toBe(flag(c, '--port'));
    expect(ann['prometheus.io/path']).toBe('/-/metrics');
    expect(flag(c, '--on-sigterm')).toBe('keep-workers');
    expect(c.lifecycle?.preStop).toBeUndefined();
  });

  it.each(DIRS)('%s: grace periods cover shoal\'s graceful stops', (d) => {
    const objs = objectsOf(d);
    const num = (re: RegExp, file: string): number => {
      const m = re.exec(readFileSync(join(ROOT, file), 'utf8'));
      if (m === null) throw new Error(`${file} no longer matches ${re}: update this test with the new bound`);
      return Number(m[1]!.replace(/_/g, ''));
    };
    // The worker drains for up to drainTimeoutMs after SIGTERM; its preStop sleeps first.
    const drainMs = num(/drainTimeoutMs \?\? ([\d_]+)/, 'packages/worker/src/worker.ts');
    const worker = pod(workerOf(objs));
    const sleep = worker.containers[0]!.lifecycle?.preStop?.exec?.command;
    expect(sleep?.[0]).toBe('sleep');
    expect(worker.terminationGracePeriodSeconds!).toBeGreaterThan(Number(sleep![1]) + drainMs / 1000);
    // The head forces its exit this long after a stop began.
    const forceMs = num(/process\.exit\(code\), ([\d_]+)\)/, 'packages/cli/src/main.ts');
    expect(pod(headOf(objs)).terminationGracePeriodSeconds!).toBeGreaterThan(forceMs / 1000);
  });

  it('base: the head keeps its state on a PersistentVolumeClaim the rendering defines; the Job deploys config.yaml', () => {
    const objs = objectsOf('base');
    const head = headOf(objs);
    const c = pod(head).containers[0]!;
    const mount = c.volumeMounts?.find((m) => m.mountPath === flag(c, '--data-dir'));
    expect(mount).toBeDefined();
    const claim = pod(head).volumes?.find((v) => v.name === mount!.name)?.persistentVolumeClaim?.claimName;
    find(objs, 'PersistentVolumeClaim', claim!);
    const job = shoalContainers(objs).find(({ c: x }) => commandOf(x) === 'deploy')!;
    const file = job.c.args![1]!;
    const cmMount = job.c.volumeMounts!.find((m) => file.startsWith(`${m.mountPath}/`))!;
    const cmName = pod(job.owner).volumes!.find((v) => v.name === cmMount.name)!.configMap!.name;
    const data = (find(objs, 'ConfigMap', cmName) as unknown as { data: Record<string, string> }).data;
    const text = data[file.slice(cmMount.mountPath.length + 1)]!;
    const parsed = parseConfig(text, 'config.yaml', cmMount.mountPath);
    // Its applications are files the image has (the Dockerfile copies them there).
    for (const a of parsed.config.applications) expect(dockerfileDestinations()).toContain(a.importPath.split(':')[0]);
  });

  it('redis: the head uses --store on a Redis Service the overlay defines, and no PersistentVolumeClaim of its own', () => {
    const objs = objectsOf('overlays/redis');
    const head = headOf(objs);
    const c = pod(head).containers[0]!;
    expect(flag(c, '--data-dir')).toBeUndefined();
    const url = new URL(flag(c, '--store')!);
    expect(url.protocol).toBe('redis:');
    const svc = find(objs, 'Service', url.hostname);
    expect((svc.spec as { ports: ServicePort[] }).ports.map((p) => p.port)).toContain(Number(url.port));
    expect(pod(head).volumes ?? []).toEqual([]);
    expect(byKind(objs, 'PersistentVolumeClaim').map((p) => p.metadata.name)).not.toContain('shoal-head-data');
  });

  it('gpu: each worker pod asks for exactly one GPU and goes to GPU nodes; a rollout replaces pods without a surge pod', () => {
    const objs = objectsOf('overlays/gpu');
    // Sized to the GPUs, the Deployment has none free for a surge pod: it would stay Pending and the rollout stall.
    expect((workerOf(objs).spec as { strategy: unknown }).strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 0, maxUnavailable: 1 } });
    expect((workerOf(objectsOf('base')).spec as { strategy: unknown }).strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    const w = pod(workerOf(objs));
    const r = w.containers[0]!.resources!;
    expect(r.limits!['nvidia.com/gpu']).toBe(1);
    expect(r.requests!['nvidia.com/gpu']).toBe(1);
    expect(w.tolerations?.some((t) => t.key === 'nvidia.com/gpu')).toBe(true);
    expect(Object.keys(w.nodeSelector ?? {}).length).toBeGreaterThan(0);
  });

  it('hpa: scales the worker Deployment (which leaves replicas to it) on documented metrics the adapter serves', () => {
    const objs = objectsOf('overlays/hpa');
    const [hpa] = byKind(objs, 'HorizontalPodAutoscaler');
    const spec = hpa!.spec as { scaleTargetRef: { kind: string; name: string }; minReplicas: number; metrics: Array<{ type: string; external: { metric: { name: string } } }> };
    const worker = workerOf(objs);
    expect(spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: worker.metadata.name });
    expect((worker.spec as { replicas?: number }).replicas).toBeUndefined();
    expect(spec.minReplicas).toBeGreaterThanOrEqual(1);
    const values = parseYaml(readFileSync(join(HERE, 'overlays/hpa/prometheus-adapter-values.yaml'), 'utf8')) as { rules: { external: Array<{ seriesQuery: string; metricsQuery: string; name?: unknown }> } };
    const served = new Set(values.rules.external.flatMap((r) => metricsIn(r.seriesQuery)));
    for (const r of values.rules.external) expect(r.name, 'the adapter serves each metric under its Prometheus name').toBeUndefined();
    expect(spec.metrics.length).toBeGreaterThan(0);
    for (const m of spec.metrics) {
      expect(m.type).toBe('External');
      expect(documentedMetrics).toContain(m.external.metric.name);
      expect(served).toContain(m.external.metric.name);
    }
  });

  it('keda: scales the worker Deployment (which leaves replicas to it) on queries of documented metrics', () => {
    const objs = objectsOf('overlays/keda');
    const [so] = byKind(objs, 'ScaledObject');
    const spec = so!.spec as { scaleTargetRef: { name: string }; minReplicaCount: number; triggers: Array<{ type: string; metadata: { query: string; threshold: string } }> };
    const worker = workerOf(objs);
    expect(spec.scaleTargetRef.name).toBe(worker.metadata.name);
    expect((worker.spec as { replicas?: number }).replicas).toBeUndefined();
    expect(spec.minReplicaCount).toBeGreaterThanOrEqual(1);
    for (const t of spec.triggers) {
      expect(t.type).toBe('prometheus');
      expect(metricsIn(t.metadata.query).length).toBeGreaterThan(0);
      for (const name of metricsIn(t.metadata.query)) expect(documentedMetrics).toContain(name);
      expect(Number(t.metadata.threshold)).toBeGreaterThan(0);
    }
  });
});

// ---------- the Dockerfile ----------
interface Instruction { op: string; rest: string }
function dockerfile(): Instruction[] {
  const text = readFileSync(join(HERE, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => { const [op, ...rest] = l.split(/\s+/); return { op: op!.toUpperCase(), rest: rest.join(' ') }; });
}
/** Where COPY instructions put files in the image (the last argument, joined with a file's name for a directory). */
function dockerfileDestinations(): string[] {
  return dockerfile().filter((i) => i.op === 'COPY').map((i) => {
    const parts = i.rest.split(/\s+/).filter((p) => !p.startsWith('--'));
    const dest = parts.at(-1)!;
    return dest.endsWith('/') ? `${dest}${parts[0]!.split('/').at(-1)}` : dest;
  });
}

describe('Dockerfile', () => {
  const ins = dockerfile();

  it('pins every base image to a major version and builds from stages it names', () => {
    const stages = new Set<string>();
    // A FROM may name an ARG (a GPU build passes other images); its default is what a plain build uses.
    const args = new Map(ins.filter((x) => x.op === 'ARG' && x.rest.includes('=')).map((x) => x.rest.split('=', 2) as [string, string]));
    const froms = ins.filter((x) => x.op === 'FROM');
    expect(froms.length).toBeGreaterThan(1);
    for (const i of froms) {
      const [raw, as, name] = i.rest.split(/\s+/);
      const image = raw!.replace(/^\$\{(\w+)\}$/, (_, n: string) => args.get(n) ?? `(ARG ${n} has no default)`);
      if (!stages.has(image)) expect(image, 'FROM image:MAJOR[-variant]').toMatch(/^[a-z0-9./-]+:\d+(-[a-z0-9.-]+)?$/);
      if (as?.toUpperCase() === 'AS') stages.add(name!);
    }
    for (const i of ins.filter((x) => x.op === 'COPY' && x.rest.includes('--from='))) expect(stages).toContain(/--from=(\S+)/.exec(i.rest)![1]);
  });

  it('copies only what the repository has (the build context is its root)', () => {
    for (const i of ins.filter((x) => x.op === 'COPY' && !x.rest.includes('--from='))) {
      const parts = i.rest.split(/\s+/).filter((p) => !p.startsWith('--'));
      for (const src of parts.slice(0, -1)) expect(existsSync(join(ROOT, src)), `COPY source ${src}`).toBe(true);
    }
  });

  it('runs scripts the root package.json has, and ends in the CLI\'s bin', () => {
    const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    const run = ins.filter((x) => x.op === 'RUN').flatMap((x) => [...x.rest.matchAll(/pnpm(?:@\d+)? run (\S+)/g)].map((m) => m[1]!));
    expect(run).toContain('pack');
    for (const s of run) expect(Object.keys(scripts), `pnpm run ${s}`).toContain(s);
    const bins = Object.keys((JSON.parse(readFileSync(join(ROOT, 'packages/cli/package.json'), 'utf8')) as { bin: Record<string, string> }).bin);
    const entry = ins.filter((x) => x.op === 'ENTRYPOINT').at(-1);
    expect(JSON.parse(entry!.rest)).toEqual([bins[0]]);
    expect(bins).toEqual(['shoal']);
    const user = ins.filter((x) => x.op === 'USER').at(-1)?.rest;
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)$/);
    // The manifests run as the uid the image creates.
    expect(readFileSync(join(HERE, 'Dockerfile'), 'utf8')).toMatch(/useradd --uid 10001/);
    for (const { owner } of shoalContainers(objectsOf('base'))) expect((podSpecOf(owner) as { securityContext: { runAsUser: number } }).securityContext.runAsUser).toBe(10001);
  });
});

// ---------- the base and the redis overlay, run here ----------
describe('base and redis manifests, run as local processes', () => {
  /** The rendering the running test takes its args from. */
  let current = 'base';
  const objs = (): K8sObject[] => objectsOf(current);
  const TOKEN = 'manifest-test-token-0123456789';
  const stops: Array<() => Promise<void>> = [];
  /** What every process this test started printed, in one log. */
  let logs = '';
  const cli = new ShoalProcesses({ SHOAL_TOKEN: TOKEN, SHOAL_LOG_LEVEL: 'warn' }, { onOutput: (text) => { logs += text; } });
  let ports = new Map<string, number>();
  /** The local Redis that stands in for the Service shoal-redis. */
  let redisUrl: string | undefined;

  afterAll(async () => {
    // SIGTERM first, so that a head stops its local workers too.
    await cli.stopAll(20_000);
    for (const stop of stops) await stop();
  });

  /** A container's args as kubelet would expand them, with ports, hosts and paths rewritten to local ones. */
  async function localArgs(owner: K8sObject, c: Container, files: Record<string, string> = {}): Promise<string[]> {
    const env = new Map<string, string>();
    for (const e of c.env ?? []) {
      const from = e.valueFrom;
      if (e.value !== undefined) env.set(e.name, e.value);
      else if (from?.secretKeyRef) env.set(e.name, TOKEN);
      else if (from?.fieldRef?.fieldPath === 'status.podIP') env.set(e.name, '127.0.0.1');
      else if (from?.resourceFieldRef) {
        const [kind, res] = from.resourceFieldRef.resource.split('.') as ['limits' | 'requests', string];
        const v = quantity(c.resources![kind]![res]!) / quantity(from.resourceFieldRef.divisor ?? '1');
        env.set(e.name, String(Math.ceil(v)));
      } else throw new Error(`${c.name}: env ${e.name} has a source this test does not model`);
    }
    const out: string[] = [];
    const args = (c.args ?? []).map((a) => a.replace(/\$\(([A-Z0-9_]+)\)/g, (_, n: string) => {
      if (!env.has(n)) throw new Error(`${c.name}: $(${n}) is not an env var of the container`);
      return env.get(n)!;
    }));
    for (let i = 0; i < args.length; i++) {
      const a = args[i]!;
      const next = args[i + 1];
      if (['--port', '--http-port', '--data-port'].includes(a)) {
        const key = `${owner.metadata.name}:${next}`;
        if (!ports.has(key)) ports.set(key, await freePort());
        out.push(a, String(ports.get(key)));
        i++;
      } else if ((a === '--host' || a === '--http-host') && next === '0.0.0.0') {
        out.push(a, '127.0.0.1');
        i++;
      } else if (a === '--address') {
        const t = resolveAddress(objs(), next!);
        const key = `${t.owner.metadata.name}:${t.containerPort}`;
        out.push(a, `ws://127.0.0.1:${ports.get(key)!}`);
        i++;
      } else if (a === '--store') {
        // The URL must name a Service of the rendering with that port; the local Redis stands in for it.
        const url = new URL(next!);
        const svc = find(objs(), 'Service', url.hostname);
        expect((svc.spec as { ports: ServicePort[] }).ports.map((p) => p.port)).toContain(Number(url.port));
        out.push(a, redisUrl!);
        i++;
      } else if (a === '--data-dir') {
        out.push(a, cli.tempDir('shoal-k8s-head-'));
        i++;
      } else out.push(files[a] ?? a);
    }
    return out;
  }

  function spawnShoal(args: string[]): ChildProcess {
    return cli.start(args).child;
  }

  /** The exit code, or a failure naming the command and its output once `timeoutMs` passes. */
  async function exitOf(child: ChildProcess, what: string, timeoutMs = 60_000): Promise<number | null> {
    await waitFor(`${what} to exit\n${logs}`, () => child.exitCode !== null || child.signalCode !== null, timeoutMs);
    return child.exitCode;
  }

  /** Waits until every probe of the container answers 200 on the port it names (mapped to the local port). */
  async function probesPass(owner: K8sObject, c: Container): Promise<string[]> {
    const seen: string[] = [];
    for (const [kind, probe] of [['startup', c.startupProbe], ['liveness', c.livenessProbe], ['readiness', c.readinessProbe]] as const) {
      if (probe?.httpGet === undefined) continue;
      const local = ports.get(`${owner.metadata.name}:${containerPort(c, probe.httpGet.port)}`)!;
      const url = `http://127.0.0.1:${local}${probe.httpGet.path}`;
      await waitFor(`${owner.metadata.name} ${kind} probe ${url} to answer 200\n${logs}`, async () => (await httpStatus(url)) === 200, 30_000);
      seen.push(`${kind} ${probe.httpGet.path}`);
    }
    return seen;
  }

  const redis = redisServerAvailable();
  if (!redis && env.requireRedis()) throw new Error('SHOAL_REQUIRE_REDIS=1 but redis-server is not installed: the redis overlay cannot be run');
  const runs = redis ? ['base', 'overlays/redis'] : ['base'];
  if (!redis) console.log('redis-server not found: overlays/redis was not run locally (its rendering is still checked above)');

  it.each(runs)('%s: head, worker and deploy Job: every probe answers 200, the app serves, the head restarts under its serving worker', async (dir) => {
    current = dir;
    ports = new Map();
    logs = '';
    if (dir === 'overlays/redis') {
      const server = await startRedisServer();
      stops.push(() => server.stop());
      redisUrl = server.url;
    }
    const head = headOf(objs());
    const hc = pod(head).containers[0]!;
    const headArgs = await localArgs(head, hc);
    const worker = workerOf(objs());
    const wc = pod(worker).containers[0]!;
    // Pods start in any order: the worker first, which waits for the head, then the head.
    const workerProc = spawnShoal(await localArgs(worker, wc));
    await waitFor(`the worker to wait for the head\n${logs}`, () => logs.includes('cannot reach the head yet; retrying'));
    expect(workerProc.exitCode).toBeNull();
    const first = spawnShoal(headArgs);
    expect(await probesPass(head, hc)).toEqual(['startup /-/healthz', 'liveness /-/healthz', 'readiness /-/ready']);
    expect(await probesPass(worker, wc)).toEqual(['startup /-/healthz', 'liveness /-/healthz', 'readiness /-/ready/worker']);
    const headPort = ports.get(`${head.metadata.name}:${flag(hc, '--port')}`)!;
    const annotations = (head.spec as { template: { metadata: { annotations: Record<string, string> } } }).template.metadata.annotations;
    expect(await httpStatus(`http://127.0.0.1:${headPort}${annotations['prometheus.io/path']}`)).toBe(200);

    // The Job, with its ConfigMap's config.yaml as the file it names and the application where the image has it.
    const job = shoalContainers(objs()).find(({ c }) => commandOf(c) === 'deploy')!;
    const file = job.c.args![1]!;
    const cm = (find(objs(), 'ConfigMap', 'shoal-config') as unknown as { data: Record<string, string> }).data;
    const confDir = cli.tempDir('shoal-k8s-config-');
    const text = cm[file.split('/').at(-1)!]!.replace(/importPath: \/app\/app\.ts/g, `importPath: ${join(ROOT, 'examples/hello/app.ts')}`);
    writeFileSync(join(confDir, 'config.yaml'), text);
    // The CLI imports the application where it runs (docs/KUBERNETES.md): an importPath only the image has is a bad
    // config here, exit 2 with nothing applied, which the Job's podFailurePolicy fails at once instead of retrying.
    writeFileSync(join(confDir, 'elsewhere.yaml'), cm[file.split('/').at(-1)!]!.replace(/importPath: \/app\/app\.ts/g, `importPath: ${join(confDir, 'not-here/app.ts')}`));
    const bad = spawnShoal(await localArgs(job.owner, job.c, { [file]: join(confDir, 'elsewhere.yaml') }));
    expect(await exitOf(bad, 'shoal deploy of a config whose importPath is not on this machine', 60_000), logs).toBe(CONFIG_EXIT_CODE);
    expect(logs).toMatch(/applications\[0\]\.importPath: no such file: \S*not-here\/app\.ts/);
    const failOn = (find(objs(), 'Job', job.owner.metadata.name).spec as { podFailurePolicy: { rules: Array<{ action: string; onExitCodes?: { values: number[] } }> } })
      .podFailurePolicy.rules.filter((r) => r.action === 'FailJob').flatMap((r) => r.onExitCodes?.values ?? []);
    expect(failOn).toContain(bad.exitCode);
    const deploy = spawnShoal(await localArgs(job.owner, job.c, { [file]: join(confDir, 'config.yaml') }));
    expect(await exitOf(deploy, 'shoal deploy (the Job)', 120_000), logs).toBe(0);
    const workerHttp = ports.get(`${worker.metadata.name}:${flag(wc, '--http-port')}`)!;
    await waitFor(`the worker to be ready with the application\n${logs}`, async () => (await httpStatus(`http://127.0.0.1:${workerHttp}/-/ready`)) === 200, 60_000);
    const answer = await fetch(`http://127.0.0.1:${workerHttp}/?text=a+great+day`);
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ label: 'positive' });

    // SIGTERM, as kubelet stops the head pod: only the head stops; the worker serves on, and rejoins the next head.
    first.kill('SIGTERM');
    expect(await exitOf(first, 'the head after SIGTERM', 30_000), logs).toBe(0);
    expect(logs).toContain('stopping the head; its workers keep serving');
    expect((await fetch(`http://127.0.0.1:${workerHttp}/?text=awful`)).status).toBe(200);
    // Same data dir, same ports: as the Recreate rollout's new pod on the same volume.
    spawnShoal(headArgs);
    await probesPass(head, hc);
    expect((await fetch(`http://127.0.0.1:${workerHttp}/?text=happy`)).status).toBe(200);
  }, 180_000);
});
