/**
 * The Open Inference Protocol (KServe v2 REST) for every model deployment of every application: each deployment
 * whose spec carries `oip` (the ONNX backend's do) answers /v2/models/<model>[/versions/<v>] for metadata, ready
 * and infer, whatever application it belongs to. Requests run in the ingress pipeline (deadline, cancellation,
 * priority, metrics) and are decoded here, in the process that received them; infer goes through this process's
 * router like any handle call, so a local replica is called in process.
 *
 * The repository extension (index, load, unload) belongs to the head, which holds the model repository (when
 * `shoal serve` runs one): those requests are forwarded to it, and load and unload, being control calls, need the
 * cluster token.
 */
import {
  CancelledError, DeadlineExceededError, NotFoundError, ReplicaUnavailableError, ShoalError, UnauthorizedError, type AppSpec, type Logger, type WireHttpRequest,
  type WireHttpResponse,
} from '@shoal/core';
import { createKServeHandler, errorResponse, type Feeds, type KServeHandler, type KServeModel, type KServeRegistry, type KServeResponse, type ModelMetadata, type RepositoryIndexEntry } from '@shoal/oip';
import { tokenMatches } from '@shoal/protocol';
import { wantsBypass } from '@shoal/cache';
import type { Router } from '@shoal/router';
import type { HttpAnswer } from './http-util.ts';
import type { ExtraRoute, RequestScope } from './ingress.ts';

export interface OipRouteOptions {
  router: Router;
  logger: Logger;
  /** The cluster token: load and unload present it as `Authorization: Bearer <token>`. */
  token: string;
  /** Sends a repository request to the head; undefined when this process is the head and has no repository. */
  forwardRepository?: (req: WireHttpRequest) => Promise<WireHttpResponse>;
  /** Largest request body. @default 67108864 (64 MiB) */
  maxBodyBytes?: number;
}

interface Served {
  key: string;
  /** The deployment's maxRequestBytes and requestTimeoutMs, which bound its infer requests as they bound any. */
  maxRequestBytes: number;
  requestTimeoutMs: number;
  name: string;
  version: string;
  platform: string;
  /** Every version of this model name that is served. */
  versions: string[];
}

const PREFIX = '/v2';

/** A request's scope, and whether its caller asked a response cache to stand aside. */
type OipScope = RequestScope & { cacheBypass?: boolean };

export class OipRoute implements ExtraRoute {
  readonly name = 'oip';
  /** model name -> versions, highest first. */
  private models = new Map<string, Served[]>();
  private readonly metadata = new Map<string, ModelMetadata>();
  private readonly maxBodyBytes: number;
  private hasRepository = false;
  /** One handler per repository mode (made once: building one per request cost ~5 us). */
  private handlerWith: KServeHandler | undefined;
  private handlerWithout: KServeHandler | undefined;

  constructor(private readonly opts: OipRouteOptions) {
    this.maxBodyBytes = opts.maxBodyBytes ?? 64 * 1024 * 1024;
  }

  /**
   * Rebuilds the model table from the applications (called with every apps update). `hasRepository`: the head
   * serves a model repository, so index, load and unload go to it.
   */
  setApps(apps: readonly AppSpec[], hasRepository = this.hasRepository): void {
    this.hasRepository = hasRepository;
    const byName = new Map<string, Served[]>();
    const seen = new Set<string>();
    for (const a of apps) {
      for (const d of a.deployments) {
        if (d.oip === undefined) continue;
        const id = `${d.oip.model}@${d.oip.version}`;
        if (seen.has(id)) {
          this.opts.logger.warn('two deployments serve one model version over OIP; the first is used', { model: d.oip.model, version: d.oip.version, ignored: `${a.name}/${d.name}` });
          continue;
        }
        seen.add(id);
        const list = byName.get(d.oip.model) ?? [];
        list.push({ key: `${a.name}/${d.name}`, name: d.oip.model, version: d.oip.version, platform: d.oip.platform, versions: [], maxRequestBytes: d.options.maxRequestBytes, requestTimeoutMs: d.options.requestTimeoutMs });
        byName.set(d.oip.model, list);
      }
    }
    for (const list of byName.values()) {
      list.sort((x, y) => compareVersions(y.version, x.version));
      const versions = list.map((s) => s.version);
      for (const s of list) s.versions = versions;
    }
    this.models = byName;
    // A redeploy may have changed a model under the same key: ask the replicas again (apps change rarely; this
    // costs one metadata call per model after a deploy).
    this.metadata.clear();
  }

  match(pathname: string): boolean {
    return pathname === PREFIX || pathname.startsWith(`${PREFIX}/`);
  }

  /** /v2/models/<m>[/versions/<v>]/infer takes that deployment's bounds; every other OIP path the route's own. */
  limits(pathname: string): { maxRequestBytes: number; requestTimeoutMs: number } {
    const m = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?\/infer\/?$/.exec(pathname);
    if (m !== null) {
      let name: string;
      let version: string | undefined;
      try { name = decodeURIComponent(m[1]!); version = m[2] === undefined ? undefined : decodeURIComponent(m[2]); } catch { return { maxRequestBytes: this.maxBodyBytes, requestTimeoutMs: 0 }; }
      const list = this.models.get(name);
      const s = version === undefined ? list?.[0] : list?.find((x) => x.version === version);
      if (s !== undefined) return { maxRequestBytes: s.maxRequestBytes, requestTimeoutMs: s.requestTimeoutMs };
    }
    return { maxRequestBytes: this.maxBodyBytes, requestTimeoutMs: 0 };
  }

  async serve(req: WireHttpRequest, scope: RequestScope): Promise<HttpAnswer> {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.from(req.body.buffer, req.body.byteOffset, req.body.byteLength);
    if (/^\/v2\/repository\/models\/[^/]+\/(load|unload)\/?$/.test(req.path)) {
      const auth = req.headers.authorization;
      const given = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
      if (!tokenMatches(this.opts.token, given)) {
        this.opts.logger.warn('repository call refused', { path: req.path, reason: given === undefined ? 'missing token' : 'wrong token' });
        const err = new UnauthorizedError(given === undefined ? `${req.method} ${req.path} is a control call: send "Authorization: Bearer <cluster token>"` : 'wrong cluster token');
        return toAnswer(errorResponse(err));
      }
    }
    // x-shoal-cache: bypass (or Cache-Control: no-cache) reaches infer's router call: a cached model computes it.
    const context: OipScope = wantsBypass(req.headers) ? { ...scope, cacheBypass: true } : scope;
    const r = await this.handler({ method: req.method, path: req.path, headers: req.headers, body, context });
    return toAnswer(r);
  }

  /** One repository request to the head; a non-2xx answer becomes the error it describes. */
  private async forward(path: string, payload: unknown): Promise<Buffer> {
    const forward = this.opts.forwardRepository;
    if (forward === undefined) throw new NotFoundError('this cluster serves no model repository');
    const body = Buffer.from(JSON.stringify(payload ?? {}));
    const out = await forward({ method: 'POST', path, query: '', headers: { 'content-type': 'application/json' }, body });
    const text = Buffer.from(out.body.buffer, out.body.byteOffset, out.body.byteLength);
    if (out.status >= 200 && out.status < 300) return text;
    let message = text.toString('utf8');
    try { message = (JSON.parse(message) as { error?: string }).error ?? message; } catch { /* not JSON: keep the text */ }
    throw new ShoalError(out.status === 404 ? 'ERR_NOT_FOUND' : out.status === 400 ? 'ERR_BAD_REQUEST' : 'ERR_INTERNAL', message, { httpStatus: out.status });
  }

  private get handler(): KServeHandler {
    if (this.hasRepository && this.opts.forwardRepository !== undefined) return this.handlerWith ??= createKServeHandler(this.registry(true), { maxBodyBytes: this.maxBodyBytes });
    return this.handlerWithout ??= createKServeHandler(this.registry(false), { maxBodyBytes: this.maxBodyBytes });
  }

  /** The registry over the applications' models; each get() is bound to its request's scope (the handler's context). */
  private registry(repository: boolean): KServeRegistry {
    const entries = (): RepositoryIndexEntry[] => [...this.models.values()].flat().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map((s) => ({ name: s.name, version: s.version, state: this.opts.router.replicaCount(s.key) > 0 ? 'READY' : 'LOADING' }));
    return {
      // With a repository the head knows every model, loaded or not (and why not); without one, the applications'.
      list: repository ? async () => JSON.parse((await this.forward('/v2/repository/index', {})).toString('utf8')) as RepositoryIndexEntry[] : entries,
      ...(repository ? {
        load: async (name: string, parameters?: Record<string, unknown>) => { await this.forward(`/v2/repository/models/${encodeURIComponent(name)}/load`, parameters === undefined ? {} : { parameters }); },
        unload: async (name: string, parameters?: Record<string, unknown>) => { await this.forward(`/v2/repository/models/${encodeURIComponent(name)}/unload`, parameters === undefined ? {} : { parameters }); },
      } : {}),
      get: async (name, version, context) => {
        const list = this.models.get(name);
        if (list === undefined) return undefined;
        const s = version === undefined ? (list.find((x) => this.opts.router.replicaCount(x.key) > 0) ?? list[0]) : list.find((x) => x.version === version);
        if (s === undefined) return undefined;
        return this.model(s, context as OipScope);
      },
      // With a repository the handler's default applies: every model the head lists that is not UNAVAILABLE is READY.
      ...(repository ? {} : { ready: () => entries().every((e) => e.state === 'READY') }),
    };
  }

  private async model(s: Served, scope: OipScope): Promise<KServeModel> {
    const router = this.opts.router;
    const ready = router.replicaCount(s.key) > 0;
    let metadata = this.metadata.get(s.key);
    if (metadata === undefined && ready) {
      try {
        metadata = await router.call(s.key, 'metadata', [], { deadline: scope.deadline, signal: scope.signal, requestId: scope.requestId, trace: scope.trace }) as ModelMetadata;
        this.metadata.set(s.key, metadata);
      } catch (err) {
        // The request's own deadline or disconnect ends it as it would end infer; anything else: not ready yet.
        if (err instanceof DeadlineExceededError || err instanceof CancelledError) throw err;
        throw new ReplicaUnavailableError(`model "${s.name}" version "${s.version}" did not give its metadata: ${(err as Error).message}`);
      }
    }
    return {
      name: s.name, version: s.version, versions: s.versions, platform: s.platform, metadata, ready: ready && metadata !== undefined,
      infer: async (feeds: Feeds) => await router.call(s.key, 'infer', [feeds], { deadline: scope.deadline, signal: scope.signal, requestId: scope.requestId, trace: scope.trace, ...(scope.priority === undefined ? {} : { priority: scope.priority }), ...(scope.cacheBypass === true ? { cache: 'bypass' as const } : {}) }) as Feeds,
    };
  }
}

function toAnswer(r: KServeResponse): HttpAnswer {
  return { status: r.status, headers: { ...r.headers }, body: r.body };
}

/** Numeric versions compare as numbers, others as strings. */
function compareVersions(a: string, b: string): number {
  const x = Number(a);
  const y = Number(b);
  if (Number.isFinite(x) && Number.isFinite(y)) return x - y;
  return a < b ? -1 : a > b ? 1 : 0;
}
