/**
 * What the KServe v2 handler needs from whatever holds the models: a backend's model repository (an in-process
 * one, or a cluster-wide one that forwards infer() to deployment handles), a fixed set of deployments
 * (fixedModelRegistry), or a test's fake. Nothing here knows which backend runs the model.
 */
import type { Feeds, ModelMetadata } from './tensor.ts';

/** Lifecycle of one model version, as the repository extension reports it. */
export type ModelState = 'LOADING' | 'READY' | 'UNLOADING' | 'UNAVAILABLE';

export interface RepositoryIndexEntry {
  name: string;
  version?: string;
  state: ModelState;
  /** Why a model is UNAVAILABLE (load error, unloaded). */
  reason?: string;
}

export interface KServeModel {
  readonly name: string;
  /** This version. */
  readonly version: string;
  /** Every version of the model being served (the metadata's "versions"). */
  readonly versions: readonly string[];
  /** @example "onnxruntime_onnx" */
  readonly platform: string;
  /** Inputs and outputs; undefined until the model has loaded. */
  readonly metadata: ModelMetadata | undefined;
  readonly ready: boolean;
  /** Runs one request; feeds are checked against `metadata` by the handler first. */
  infer(feeds: Feeds, opts: { outputs?: string[] }): Promise<Feeds>;
}

export interface KServeRegistry {
  /** Every model the repository knows, loaded or not (POST /v2/repository/index). */
  list(): RepositoryIndexEntry[] | Promise<RepositoryIndexEntry[]>;
  /**
   * A model version, or its default (highest served) version; undefined when there is none. `context` is the
   * request's KServeRequest.context, so one registry can serve requests that each carry their own deadline.
   */
  get(name: string, version?: string, context?: unknown): KServeModel | undefined | Promise<KServeModel | undefined>;
  /**
   * Loads or reloads a model; rejects with NotFoundError for a model the repository lacks. A registry without
   * load and unload serves a fixed set of models: the handler then answers the repository's load and unload
   * endpoints with 404 and leaves model_repository out of the server's extensions.
   */
  load?(name: string, parameters?: Record<string, unknown>): Promise<void>;
  /** Unloads a model; rejects with NotFoundError for a model that is not loaded. */
  unload?(name: string, parameters?: Record<string, unknown>): Promise<void>;
  /** Server readiness. @default every listed model that is not UNAVAILABLE is READY */
  ready?(): boolean | Promise<boolean>;
}
