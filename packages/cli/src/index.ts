export { main, loadAppSpec, control, formatStatus, localWorkerCommand } from './main.ts';
export { serveRepository, headModelCluster, type ServeOptions } from './serve.ts';
