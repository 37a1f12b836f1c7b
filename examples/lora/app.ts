/**
 * N fine-tuned variants of one model served from one copy of the base: an HTTP ingress in front of a model-family
 * deployment (shared MLP tower + a LoRA adapter and head per variant). Replicas in a worker share the base
 * weights; a batch that mixes variants runs the base once and groups adapter and head work by variant.
 *
 *   shoal run examples/lora/app.ts              (host backend; `--export gpu` places on CUDA devices)
 *   curl -s localhost:8000/info
 *   curl -s localhost:8000/predict -d '{"variant":"v2","input":[0.1, 0.2, ... 32 numbers]}'
 *   curl -s localhost:8000/stats                (base refs, resident bytes counted once, batches)
 *
 * The weights are random, written on first start to a directory under the OS temp dir.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deployment, response, type Application, type DeviceKind, type Handle, type ShoalRequest } from '@shoal/core';
import { familyDeployment, familyResources, writeExampleFamily, type FamilyReplica, type FamilyRequest } from '@shoal/native';

/** The family this example serves; tests rebuild the same weights from it for their reference. */
export const EXAMPLE = { name: 'tower', dims: [32, 64, 48], variants: 4, rank: 4, headDim: 8, seed: 7 };
export const WEIGHTS_DIR = join(tmpdir(), `shoal-example-lora-${EXAMPLE.dims.join('x')}-v${EXAMPLE.variants}-r${EXAMPLE.rank}-h${EXAMPLE.headDim}-s${EXAMPLE.seed}`);
export const MANIFEST = join(WEIGHTS_DIR, `${EXAMPLE.name}.family.json`);

/** The head and every worker import this module: each writes a private copy and the first rename wins. */
async function ensureWeights(): Promise<void> {
  if (existsSync(MANIFEST)) return;
  const scratch = await mkdtemp(`${WEIGHTS_DIR}.tmp-`);
  await writeExampleFamily({ dir: scratch, ...EXAMPLE });
  try {
    await rename(scratch, WEIGHTS_DIR);
  } catch (err) {
    if (!existsSync(MANIFEST)) throw err;
    await rm(scratch, { recursive: true, force: true });
  }
}
await ensureWeights();

const familyOptions = { manifest: MANIFEST, memoryBudgetBytes: 16 * 1024 * 1024, batching: { maxBatchSize: 32, maxWaitMs: 2 } };

export class Api {
  constructor(private readonly tower: Handle<FamilyReplica>) {}

  async fetch(req: ShoalRequest): Promise<unknown> {
    if (req.path === '/info') return this.tower.info();
    if (req.path === '/stats') return this.tower.stats();
    if (req.path === '/predict' && req.method === 'POST') {
      const body = req.json<Partial<FamilyRequest>>();
      if (typeof body.variant !== 'string' || !Array.isArray(body.input)) {
        return response({ error: 'send {"variant": "v0", "input": [numbers]}' }, { status: 400 });
      }
      const output = await this.tower.predict({ variant: body.variant, input: body.input });
      return { variant: body.variant, output: Array.from(output) };
    }
    return response({ error: 'GET /info, GET /stats, or POST /predict {"variant", "input"}' }, { status: 404 });
  }
}

/** The application, placing the family's replicas by device memory on devices of `device` kind. */
export function loraApp(device: DeviceKind, numReplicas = 2): Application<Api> {
  const Tower = deployment(familyDeployment(familyOptions), {
    name: 'Tower',
    numReplicas,
    maxOngoingRequests: 256,
    // The pool budget per replica, and the base and adapters once per device however many replicas share them.
    resources: { cpus: 0.5, ...familyResources(familyOptions), device },
  });
  return deployment(Api, { resources: { cpus: 0.5 } }).bind(Tower.bind());
}

export default loraApp('host');
export const gpu = loraApp('cuda');
