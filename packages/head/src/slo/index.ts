export { DeploymentSeries, FINE_STEP_MS, FINE_SPAN_MS, RECENT_MS, type Point, type ReplicaSample, type ReplicaResources, type Window } from './series.ts';
export {
  BURN_ALERTS, SLO_WINDOWS_MS, alertingOf, attainmentOf, budgetRemainingOf, burnRateOf, edgeOf, edgesOf, goodAndTotal, objectivesOf, sloStatusOf,
  type BurnWindow, type Objective, type ObjectiveStatus, type SloStatus,
} from './objectives.ts';
export { costOf, type CostFigures, type Prices } from './cost.ts';
export { compilePrices, type PriceOptions } from './prices.ts';
export { trafficOf, TRAFFIC_WINDOW_MS, type TrafficFigures } from './traffic.ts';
export { SloTracker, COST_WINDOW_MS, type DeploymentCost, type DeploymentFigures } from './tracker.ts';
