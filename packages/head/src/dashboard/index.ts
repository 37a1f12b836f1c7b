export { Dashboard, DASHBOARD_EVENTS_PATH, DASHBOARD_PATH, isDashboardPath, type DashboardOptions } from './dashboard.ts';
export { DASHBOARD_COOKIE, dashboardSession } from './auth.ts';
export { buildSnapshot, type DashboardSnapshot, type DashboardDeployment, type DashboardBatch, type DashboardWorker, type DashboardReplica } from './snapshot.ts';
