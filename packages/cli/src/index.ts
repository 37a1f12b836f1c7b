export { main, loadAppSpec, control, formatStatus } from './main.ts';
export { serveRepository, headModelCluster, lateRoute, type ServeOptions } from './serve.ts';
