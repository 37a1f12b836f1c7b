/**
 * The wire protocol between head and workers, and between workers. Every WebSocket frame is a msgpack array of
 * messages (all messages queued in one event-loop tick travel in one frame). Messages are discriminated by `t`.
 * Requests carry an `id` unique per connection and direction; the answer is a `reply` with the same id.
 */
import type { ChunkStream, WireStreamWindow } from '@shoal/core';
import type { AppSpec, BatchQueueStats, CompiledCacheOptions, LogFilter, ModelCacheStats, TimedLine, TraceContext, WireError, WireHttpRequest, WireHttpResponse } from '@shoal/core';

/** Bumped on any incompatible change; checked in `hello`. 4: streamed answers (`s`, `chunk`, `credit`). */
export const PROTOCOL_VERSION = 4;

export type ReplicaState = 'STARTING' | 'RUNNING' | 'DRAINING' | 'STOPPED' | 'FAILED';

export interface DeviceInfo {
  index: number;
  name: string;
  kind: 'cuda' | 'host';
  totalBytes: number;
  freeBytes: number;
  computeCapability?: string;
}

export interface WorkerResources {
  cpus: number;
  /** Bytes of host memory. */
  memory: number;
  gpus: number;
  devices: DeviceInfo[];
}

// ---- worker -> head (control connection) ----
export interface HelloMessage {
  t: 'hello';
  v: number;
  token: string;
  role: 'worker' | 'peer';
  /** Worker name chosen by the worker (hostname-pid) so logs on both sides agree. */
  name: string;
  resources?: WorkerResources;
  /** ws://host:port where this worker accepts data connections from other workers. */
  dataAddress?: string;
  pid?: number;
  /**
   * Reconnects after a lost head: the replicas this worker still runs, for the new head to adopt instead of
   * starting them again, and the id the worker had (kept when free, so route tables other workers hold stay true).
   */
  replicas?: RunningReplica[];
  previousWorkerId?: string;
  /** Spawned by a head on this machine (the embedded default): a new head counts it among its local workers. */
  local?: boolean;
}
/** A replica a worker reports when it (re)joins a head. */
export interface RunningReplica {
  replicaId: string;
  app: string;
  deployment: string;
  /** The deployment version the head started it at (StartReplicaMessage.version). */
  version: string;
  state: ReplicaState;
  devices?: number[];
}
/**
 * `waiting`: requests this worker's router holds for a deployment that has no free replica (or none at all), per
 * deployment key: the demand that autoscaling and scale-from-zero act on.
 */
export interface HeartbeatMessage {
  t: 'hb'; at: number; replicas: ReplicaLoad[]; waiting?: Record<string, number>;
  /** Shadow comparisons this worker's router made, cumulative, keyed `${app}/${deployment}@${shadowVersion}`. */
  shadow?: Record<string, ShadowCounts>;
  /** Experiment assignments made since the last heartbeat: [experiment, requestId, variant index]. */
  assign?: Array<[string, string, number]>;
}
/**
 * `o`: what the replica answered since it started, cumulative: requests, errors (thrown, or HTTP 5xx) and the
 * sparse latency histogram (LatencyHistogram.sparse()) of the time from arrival at the replica to the answer.
 * `b`: ms the replica has had at least one request in user code since it started, cumulative (cost, idle share).
 * `p`: while the replica starts, the model load progress its code last reported (reportLoadProgress), [bytes loaded, bytes total].
 */
export interface ReplicaLoad { replicaId: string; ongoing: number; queued: number; o?: { n: number; e: number; h: number[] }; models?: ModelSet; p?: [number, number]; b?: number }
/** One router's comparison of a shadow version's answers with the live ones, cumulative. */
export interface ShadowCounts {
  /** Copies sent to the shadow version. */
  mirrored: number;
  /** Copies not sent: no shadow replica had room (the mirror is the first thing dropped under load). */
  dropped: number;
  /** Pairs compared (both answered). */
  compared: number;
  /** Pairs whose labels and structure agree (every non-numeric part equal). */
  agreed: number;
  /** The shadow failed where the live answer succeeded. */
  shadowErrors: number;
  /** Numbers compared across all pairs, the sum and the largest of their absolute differences. */
  numbers: number;
  sumAbsDiff: number;
  maxAbsDiff: number;
}
/**
 * The models a multiplexed replica holds (loaded or loading), and `v`, its cache's change count: of two sets for one
 * replica the one with the higher `v` is newer. Travels in heartbeats (to the head), route entries (to routers) and
 * in the reply to a request that named a model (so the router that sent it learns at once).
 */
export interface ModelSet { v: number; ids: string[] }
export interface ReplicaStateMessage { t: 'replicaState'; replicaId: string; state: ReplicaState; error?: string }

// ---- head -> worker (control connection) ----
/**
 * `timeoutMs`: silence after which either side declares the other gone (pings every heartbeatMs). `session`: the
 * head's run; a worker joining a new session takes its route table and applications whatever their version.
 */
export interface WelcomeMessage { t: 'welcome'; v: number; workerId: string; heartbeatMs: number; timeoutMs?: number; session?: string }
export interface RefuseMessage { t: 'refuse'; code: string; message: string }
/** `devices`: the device indices the head placed the replica on (placement by device memory or gpus). */
export interface StartReplicaMessage { t: 'start'; id: number; replicaId: string; app: AppSpec; deployment: string; devices?: number[]; version?: string }
export interface StopReplicaMessage { t: 'stop'; id: number; replicaId: string; timeoutMs: number }
export interface ReconfigureMessage { t: 'reconfigure'; id: number; replicaId: string; userConfig: unknown }
export interface HealthMessage { t: 'health'; id: number; replicaId: string; timeoutMs: number }
export interface RoutesMessage { t: 'routes'; version: number; table: RouteTable }
/**
 * Every application the head serves, so each worker's ingress mounts them; sent on every deploy or delete and
 * right after welcome (a worker serves HTTP only once it has its first one).
 */
export interface AppsMessage { t: 'apps'; version: number; apps: AppSpec[]; /** The head serves a model repository (index, load, unload). */ repository?: boolean }
/** Asks a worker for its gauges; the reply's value is a {@link WorkerStats}. */
export interface StatsMessage { t: 'stats'; id: number }
/** Asks a worker for its Prometheus registry; the reply's value is prom-client's getMetricsAsJSON() array. */
export interface MetricsMessage { t: 'metrics'; id: number }
/**
 * Asks a worker for its recent log records (its in-memory ring); the reply's value is a LogQueryAnswer (@shoal/core):
 * [epoch ms, JSON line] pairs oldest first, each line with a `worker` field, and how many older ones the limit left out.
 * `logsFollow` also subscribes, in the same turn (no line is missed or sent twice between the two): new matching
 * lines then come as `logsPush` with the same `sub` until `logsUnfollow` or the connection closes. A worker that
 * does not know these messages ignores them (the head gives up on it after a second): no version bump needed.
 */
export interface LogsMessage { t: 'logs'; id: number; filter: LogFilter }
export interface LogsFollowMessage { t: 'logsFollow'; id: number; sub: number; filter: LogFilter }
export interface LogsUnfollowMessage { t: 'logsUnfollow'; sub: number }
/** Worker -> head: new lines for a follow; `dropped`: lines lost since the last push because the head was behind. */
export interface LogsPushMessage { t: 'logsPush'; sub: number; lines: TimedLine[]; dropped?: number }
/** Worker -> head: asks for the whole cluster's metrics (the reply's value is the Prometheus text), for /-/metrics on a worker's ingress. */
export interface ScrapeMessage { t: 'scrape'; id: number }
/** Worker -> head: a model repository request (index, load, unload) its ingress received; the reply's value is a WireHttpResponse. */
export interface RepositoryMessage { t: 'repository'; id: number; req: WireHttpRequest }

/** One replica's gauges: every count returns to 0 when it is idle, whatever was cancelled. */
export interface ReplicaStats {
  replicaId: string;
  app: string;
  deployment: string;
  state: ReplicaState;
  /** Requests running in user code (at most maxOngoingRequests). */
  ongoing: number;
  /** Requests waiting in the replica for a slot. */
  queued: number;
  /** Per batched method (field name). */
  batch: Record<string, BatchQueueStats>;
  /** The model cache of a multiplexed replica. */
  models?: ModelCacheStats;
}

export interface WorkerStats {
  workerId: string;
  /** HTTP requests this worker's ingress answered, and data-plane requests it took from other processes. */
  traffic?: { ingressRequests: number; dataIn: { call: number; http: number } };
  replicas: ReplicaStats[];
  /** The worker's router (handle calls its replicas make), per deployment key. */
  router: Record<string, { inflight: number; waiting: number; replicas: number }>;
}

/** Where the replicas of each deployment run; key `${app}/${deployment}`. Only RUNNING replicas are listed. */
export interface RouteTable {
  [deploymentKey: string]: RouteEntry;
}
export interface RouteEntry {
  maxOngoingRequests: number;
  maxQueuedRequests: number;
  requestTimeoutMs: number;
  /** `version`: the deployment version the replica runs (set whenever `traffic` is). */
  replicas: Array<{ replicaId: string; workerId: string; dataAddress: string; version?: string; models?: ModelSet }>;
  /** Set while two versions serve (a canary, a shadow, an experiment): how routers split requests between them. */
  traffic?: RouteTraffic;
  /**
   * Set for a multiplexed deployment: requests at every replica holding a model past which a router also sends
   * that model's requests to replicas without it (multiplex.hotOngoingRequests). Replicas then carry `models`.
   */
  hotOngoingRequests?: number;
  /** Methods a router may retry once after a worker died mid-call (HTTP GET and HEAD always may). @default none */
  idempotentMethods?: string[];
  /**
   * Set while the deployment has no running replica and its starts keep failing: the last start error. Routers
   * answer 503 with it at once instead of holding requests for a replica that is not coming.
   */
  unavailable?: string;
  /** Set when the deployment caches its answers (options.cache): replicas then carry `version` too. */
  cache?: RouteCache;
  /**
   * Instance fields that stream (continuous methods, async generator fields), as its replicas reported at start:
   * handles call them as streams, as they do the prototype's `async *` methods. @default none
   */
  streams?: string[];
}

/**
 * A deployment's response cache as routers apply it. Entries are keyed by version: a router stores an answer only
 * under the version of the replica that gave it, and serves it only to a request pinned to that version.
 */
export interface RouteCache extends CompiledCacheOptions {
  /** The deployment's version (its code and options) that requests not split between versions are keyed on. */
  version: string;
  /** A hash of the deployment's userConfig: a reconfigure changes answers without a new version. */
  config: string;
}

export interface RouteTraffic {
  /** Share of live requests per version, in percent (summing to 100); a version not listed gets none. */
  weights: Array<{ version: string; percent: number }>;
  /** A sticky split (an experiment): the hash of this header's value and the experiment's name picks the version. */
  sticky?: { header: string; experiment: string };
  /** Mirror this share of requests to this version: its answers are compared with the live ones, never returned. */
  shadow?: { version: string; percent: number };
}

// ---- data plane: any caller -> worker hosting the replica ----
export interface CallMessage {
  t: 'call';
  id: number;
  replicaId: string;
  method: string;
  args: unknown[];
  /** Absolute deadline in Date.now() ms. */
  deadline?: number;
  priority?: number;
  /** The model the request names (a multiplexed deployment serves it with that model). */
  modelId?: string;
  /** The request's id (X-Request-ID at the ingress). */
  rid?: string;
  /** The calling span's trace context: the replica's spans are its children. */
  tc?: TraceContext;
  /**
   * The caller takes a streamed answer, with this window: [chunks, bytes] it lets the replica send ahead of what
   * it has taken (see ChunkMessage). Without it, a method that streams is answered with its chunks gathered into
   * one array (an HTTP body: see docs/streaming.md).
   */
  s?: WireStreamWindow;
  /**
   * No cache: the caller asked to skip caches (CallOptions.cache 'bypass'), so the replica's semantic cache neither
   * answers nor stores this call. Absent otherwise; a peer that does not know it ignores it.
   */
  nc?: true;
}
export interface HttpMessage { t: 'http'; id: number; replicaId: string; req: WireHttpRequest; deadline?: number; priority?: number; modelId?: string; rid?: string; tc?: TraceContext; s?: WireStreamWindow }
/** Cancels a request; on a stream it also ends the generator (its finally blocks run). */
export interface CancelMessage { t: 'cancel'; id: number }
/**
 * Hosting worker -> caller: chunks of the streamed answer to request `id`, in order; those ready in one tick travel
 * in one message. The first one starts the stream at the caller (an empty one starts a stream with no chunks); the
 * normal `reply` ends it (ok, or the error the generator threw). The replica sends no more than the window's
 * credit allows.
 */
export interface ChunkMessage { t: 'chunk'; id: number; v: unknown[] }
/** Caller -> hosting worker: the consumer took `n` chunks of stream `id`; the replica may send `n` more. */
export interface CreditMessage { t: 'credit'; id: number; n: number }

/**
 * `q`: the replica's load (running + queued) right after answering, not counting the request answered.
 * `stream`: never on the wire; set by the Peer (or an in-process dispatch) when the answer is a stream that has
 * started: `value` is then that ChunkStream, and the stream's own end is the answer's end.
 */
export interface ReplyOk { t: 'reply'; id: number; ok: true; value: unknown; q?: number; models?: ModelSet; stream?: ChunkStream }
/** `nr`: the request provably never reached user code (the replica was draining or gone, its queue full): a router may retry it elsewhere. */
export interface ReplyErr { t: 'reply'; id: number; ok: false; error: WireError; q?: number; nr?: true; models?: ModelSet }
export type ReplyMessage = ReplyOk | ReplyErr;

export type WorkerToHead = HelloMessage | HeartbeatMessage | ReplicaStateMessage | ScrapeMessage | RepositoryMessage | LogsPushMessage | ReplyMessage | ChunkMessage;
export type HeadToWorker = WelcomeMessage | RefuseMessage | StartReplicaMessage | StopReplicaMessage | ReconfigureMessage | HealthMessage | StatsMessage | MetricsMessage | LogsMessage | LogsFollowMessage | LogsUnfollowMessage | RoutesMessage | AppsMessage | CallMessage | HttpMessage | CancelMessage | CreditMessage | ReplyMessage;
export type PeerToWorker = HelloMessage | CallMessage | HttpMessage | CancelMessage | CreditMessage | ReplyMessage | ChunkMessage;
export type Message = WorkerToHead | HeadToWorker | PeerToWorker;

/** Messages that expect a reply. */
export type RequestMessage = StartReplicaMessage | StopReplicaMessage | ReconfigureMessage | HealthMessage | StatsMessage | MetricsMessage | LogsMessage | LogsFollowMessage | ScrapeMessage | RepositoryMessage | CallMessage | HttpMessage;

export type { WireHttpRequest, WireHttpResponse };

/**
 * The embedded default's HTTP socket hand-over over a local worker's IPC channel (not the WebSocket): the worker
 * asks once it can take it, and the head answers with the listening socket attached.
 */
export const IPC_HTTP_SOCKET_REQUEST = 'shoal:http-socket?';
export const IPC_HTTP_SOCKET = 'shoal:http-socket';
