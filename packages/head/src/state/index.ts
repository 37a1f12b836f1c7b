/**
 * The head's durable state store: desired state (applications and their version histories), the workers last
 * seen, and the single-head lease. FileStateStore is the embedded default; RedisStateStore lets a standby head on
 * another machine take over.
 *
 *   const store = new FileStateStore(dataDir, { logger });
 *   await store.open({ onLeaseLost: () => head.stop() });   // StoreLockedError names the other head
 *   const { apps, workers } = await store.load();
 *   await store.putApp(spec, { deployedAtMs: Date.now(), versions: { Model: 'a1b2c3d4e5f6' } });
 *   await store.close();
 */
export {
  STATE_SCHEMA_VERSION, type StateStore, type StateStoreOptions, type OpenOptions, type ClusterState, type StoredApp, type AppMeta,
  type DeploymentVersion, type SeenWorker,
} from './state-store.ts';
export { FileStateStore, STATE_FILE, LOCK_FILE, type FileStateStoreOptions } from './file-state-store.ts';
export { RedisStateStore, type RedisStateStoreOptions } from './redis-state-store.ts';
export { type StoreLifecycle } from './leased-state-store.ts';
export { specHash } from './state-document.ts';
export {
  StateStoreError, StoreLockedError, StoreLeaseLostError, StoreCorruptError, StoreIoError, type StateStoreErrorCode, type LeaseHolder,
} from './errors.ts';
