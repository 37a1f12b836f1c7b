/** What user code sees of its replica through requestContext(): identity and placed devices, from construction on. */
import { describe, expect, it } from 'vitest';
import { compileDeploymentOptions, requestContext, silentLogger, type RequestContext } from '@shoal/core';
import { Replica, type ReplicaInstance } from '../src/replica.ts';

class Seer {
  readonly atConstruct = requestContext();
  atInit: RequestContext | undefined;
  init(): void { this.atInit = requestContext(); }
  devices(): readonly number[] | null { return requestContext()?.devices ?? null; }
}

async function start(devices?: number[]): Promise<{ replica: Replica; seer: Seer }> {
  const replica = new Replica({ replicaId: 'r1', app: 'app', deployment: 'Seer', options: compileDeploymentOptions({}, 'Seer'), logger: silentLogger, ...(devices === undefined ? {} : { devices }) });
  let seer: Seer | undefined;
  await replica.start(() => (seer = new Seer()) as unknown as ReplicaInstance);
  return { replica, seer: seer! };
}

describe('replica context', () => {
  it('gives the constructor, init() and every call the devices the head placed the replica on', async () => {
    const { replica, seer } = await start([1, 3]);
    expect(seer.atConstruct).toMatchObject({ app: 'app', deployment: 'Seer', replicaId: 'r1', devices: [1, 3], deadline: undefined });
    expect(seer.atConstruct!.signal.aborted).toBe(false);
    expect(seer.atInit).toMatchObject({ replicaId: 'r1', devices: [1, 3] });
    expect(await replica.call('devices', [], new AbortController().signal, undefined)).toEqual([1, 3]);
    await replica.drain(1000);
  });

  it('leaves devices unset for a replica placed without devices', async () => {
    const { replica, seer } = await start();
    // The context is there (identity set), only its devices are not.
    expect(seer.atConstruct).toMatchObject({ app: 'app', deployment: 'Seer', replicaId: 'r1' });
    expect(seer.atConstruct!.devices).toBeUndefined();
    expect(seer.atInit).toMatchObject({ replicaId: 'r1' });
    expect(seer.atInit!.devices).toBeUndefined();
    expect(await replica.call('devices', [], new AbortController().signal, undefined)).toBeNull();
    await replica.drain(1000);
  });
});
