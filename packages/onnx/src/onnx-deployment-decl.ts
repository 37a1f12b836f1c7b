/**
 * onnxDeployment(): one call that declares a deployment serving an ONNX model: the onnxModel() class with its
 * pool and batching options, wrapped by @shoal/core's deployment() with its replica options.
 *
 * @example
 * import { onnxDeployment } from '@shoal/onnx';
 * export default onnxDeployment({
 *   name: 'mlp', model: 'models/mlp/1/model.onnx', numReplicas: 2,
 *   threads: 1, intraOpThreads: 2, batching: { maxBatchSize: 32, maxWaitMs: 2 },
 * }).bind();
 */
import { deployment, type Deployment, type DeploymentOptions } from '@shoal/core';
import { defaultModelName, onnxModel, type OnnxModelInstance, type OnnxModelOptions } from './onnx-deployment.ts';

/** Deployment options that onnxDeployment() passes to deployment(); `name` is shared with the model. */
const DEPLOYMENT_KEYS = [
  'numReplicas', 'maxOngoingRequests', 'maxQueuedRequests', 'maxRequestBytes', 'requestTimeoutMs', 'resources',
  'userConfig', 'healthCheckPeriodMs', 'healthCheckTimeoutMs', 'gracefulShutdownTimeoutMs', 'autoscaling', 'idempotentMethods', 'rollout',
] as const satisfies ReadonlyArray<keyof DeploymentOptions>;

type DeploymentKey = (typeof DEPLOYMENT_KEYS)[number];

/** The model's options (see OnnxModelOptions) and the deployment's (see DeploymentOptions), side by side. */
export interface OnnxDeploymentOptions extends OnnxModelOptions, Pick<DeploymentOptions, DeploymentKey> {
  /** Deployment name, also the model's name in logs and errors. @default the model directory or file stem */
  name?: string;
}

/** Declares a deployment serving `options.model`. Every option is checked here, at declaration. */
export function onnxDeployment(options: OnnxDeploymentOptions): Deployment<OnnxModelInstance, []> {
  const name = options.name ?? defaultModelName(options.model);
  const modelOptions: Record<string, unknown> = {};
  const deploymentOptions: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) {
    if (v === undefined) continue;
    if ((DEPLOYMENT_KEYS as readonly string[]).includes(k)) deploymentOptions[k] = v;
    else modelOptions[k] = v;
  }
  const cls = onnxModel({ ...(modelOptions as unknown as OnnxModelOptions), name });
  return deployment(cls, { ...(deploymentOptions as DeploymentOptions), name });
}
