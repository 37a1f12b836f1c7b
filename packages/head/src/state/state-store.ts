/**
 * The head's durable state: what the operator asked for (applications, with a short version history per
 * deployment) and which workers the head last saw, so a restarted head knows whom to wait for. A store also
 * holds the single-head lease: while one head has it open, no other head can write.
 *
 * Every write is atomic and ordered: after a crash at any moment the store loads either the state before the
 * write or the state after it, and writes land in the order they were called.
 */
import type { AppSpec, Clock, DeploymentSpec, Logger } from '@shoal/core';
import type { StoreLeaseLostError } from './errors.ts';

/** The layout of stored state; a store written under another version refuses to load (ERR_STORE_CORRUPT). */
export const STATE_SCHEMA_VERSION = 1;

/** What the head passes with each application it stores. */
export interface AppMeta {
  /** Wall ms (epoch) when the head accepted this spec; the timestamp of any new history entry. */
  deployedAtMs: number;
  /**
   * The controller's version id of each deployment of the spec, keyed by deployment name (every deployment needs
   * one). A history entry is added when a deployment's version id or spec hash differs from its newest entry.
   */
  versions: Readonly<Record<string, string>>;
  /**
   * Rollouts in progress, by deployment: the version that serves while the current one proves itself, and the
   * phase it had reached, so a restarted head goes on with it rather than promote a half-judged canary. @default none
   */
  rollouts?: Readonly<Record<string, StoredRollout>>;
}

/** A rollout in progress, as stored (see AppMeta.rollouts). */
export interface StoredRollout {
  /** The stable version's id: it must be in the deployment's history (with its spec). */
  from: string;
  phase: 'shadow' | 'canary' | 'experiment' | 'rolling';
  /** The canary step reached (0-based). */
  step: number;
}

/** One entry of a deployment's version history. */
export interface DeploymentVersion {
  /** The controller's version id (what replicas run). */
  versionId: string;
  /** sha256 (16 hex) of the whole deployment spec, options included, so a scale change is a new entry too. */
  specHash: string;
  /** Wall ms (epoch): the AppMeta.deployedAtMs of the putApp that added it. */
  atMs: number;
  /** The deployment's spec at this version, and the module it came from: what a rollback to it starts. */
  spec?: DeploymentSpec;
  code?: { modulePath: string; exportName: string; codeHash?: string };
}

export interface StoredApp {
  spec: AppSpec;
  meta: AppMeta;
  /** Per deployment of the current spec, oldest first, at most `historyLimit` entries. */
  history: Record<string, DeploymentVersion[]>;
}

/** A worker as the head last saw it. */
export interface SeenWorker {
  name: string;
  dataAddress: string;
  workerId: string;
  /** True for a worker process this head spawned itself (the embedded default). */
  local: boolean;
  pid?: number;
}

export interface ClusterState {
  /** Keyed by application name. */
  apps: Record<string, StoredApp>;
  workers: SeenWorker[];
}

export interface OpenOptions {
  /**
   * When another head holds the lease: false fails at once with StoreLockedError naming the holder; true waits as
   * a standby until the lease frees (the holder closes, dies, or its Redis lease expires) and then takes it.
   * @default false
   */
  standby?: boolean;
  /** Ends a standby wait: open() rejects with CancelledError. */
  signal?: AbortSignal;
  /**
   * Called once when the store finds that this head lost the lease (a Redis renewal failed for a whole TTL, or a
   * fenced write was refused). Every later write rejects with the same error; the head must stop acting.
   */
  onLeaseLost?: (err: StoreLeaseLostError) => void;
}

/**
 * The state store. Lifecycle: idle -> opening -> open -> closed, or open -> lost when the lease is lost; a failed
 * open() ends in closed. A store opens once: to retry, make a new one.
 *
 *   const store = new FileStateStore(dataDir, { logger });
 *   await store.open();                          // StoreLockedError if another head holds it
 *   const state = await store.load();
 *   await store.putApp(spec, { deployedAtMs: Date.now(), versions });
 *   await store.close();
 */
export interface StateStore {
  /** Where the state lives, for logs: `file /data/state.json`, `redis redis://host:6379 prefix shoal:`. */
  readonly description: string;
  /** Takes the single-head lease and reads the stored state (StoreCorruptError if unreadable; the lease is then released). */
  open(opts?: OpenOptions): Promise<void>;
  /** The state read at open() plus this store's writes since (while it holds the lease nobody else writes). A copy. */
  load(): Promise<ClusterState>;
  /** Stores (replaces) an application and extends its deployments' version histories, in one atomic write. */
  putApp(spec: AppSpec, meta: AppMeta): Promise<void>;
  /** Removes an application and its history; resolves false when there was none. */
  deleteApp(name: string): Promise<boolean>;
  /** Replaces the list of workers last seen. */
  putWorkers(workers: readonly SeenWorker[]): Promise<void>;
  /** Waits for pending writes, then releases the lease. Safe to call twice, or while open() still waits as standby. */
  close(): Promise<void>;
}

/** Options both stores take. */
export interface StateStoreOptions {
  /** Entries kept per deployment in its version history, newest kept. @default 10 */
  historyLimit?: number;
  /** How often a standby checks whether the lease is free. @default 1000 */
  standbyPollMs?: number;
  /** Where the store logs a stale-lock takeover, standby waits and lease loss. @default createLogger('state-store') */
  logger?: Logger;
  /** @default realClock */
  clock?: Clock;
}
