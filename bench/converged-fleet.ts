// A converged fleet written straight into the state and the embedded engines, as an apply would
// leave it: every placed instance's record (packages raised to its baseline; stored as
// FleetState.putInstance stores it: compact, naming its profile), its record on its host, and its
// host's fence at generation 1. For benchmarks of a plan on a large converged fleet
// (bench/apply.ts, bench/plan-100k.ts) without applying it first.
import type { Redis } from 'ioredis';
import type { Fleet, Image } from '../src/model/fleet.js';
import { evaluateBaseline, packagesToRaise } from '../src/patching/baseline.js';
import { schedule } from '../src/scheduler/schedule.js';
import { storedInstanceRecord } from '../src/state/instance-records.js';
import { engineHostKeys, fleetKeys } from '../src/state/keys.js';

/** An image's packages as apply leaves them: raised to the group's baseline where below it. */
function patched(fleet: Fleet, baselineName: string | undefined, image: Image | undefined) {
  const packages = image?.packages ?? {};
  const baseline = fleet.patchBaselines.find((b) => b.name === baselineName);
  if (!baseline || !image) return packages;
  const result = evaluateBaseline(baseline, image.os, packages);
  return result.applicable ? { ...packages, ...packagesToRaise(result.packages) } : packages;
}

/** A converged fleet written straight into the state and the engines, as apply would leave it. */
export async function converge(redis: Redis, fleet: Fleet): Promise<void> {
  const placement = schedule(fleet);
  const groups = new Map(fleet.groups.map((g) => [g.name, g]));
  const images = new Map(fleet.images.map((i) => [i.name, i]));
  const keys = fleetKeys(fleet.name);
  let pipe = redis.pipeline();
  let n = 0;
  for (const p of placement.placements) {
    const g = groups.get(p.group)!;
    const record = {
      instance: p.instance,
      group: p.group,
      host: p.host,
      generation: 1,
      status: 'running' as const,
      image: g.image,
      resources: g.resources,
      failoverHost: p.failoverHost,
      packages: patched(fleet, g.patchBaseline, images.get(g.image)),
    };
    const stored = storedInstanceRecord(record);
    for (const [hash, id, json] of stored.entries) pipe.hset(keys[hash], id, json);
    pipe.hset(keys.instances, p.instance, stored.json);
    pipe.hset(
      engineHostKeys(fleet.name, p.host).instances,
      p.instance,
      JSON.stringify({
        instance: p.instance,
        group: p.group,
        generation: 1,
        status: 'running',
        image: g.image,
        resources: g.resources,
        packages: record.packages,
      }),
    );
    pipe.hset(engineHostKeys(fleet.name, p.host).fence, p.instance, '1');
    if (++n % 5000 === 0) {
      await pipe.exec();
      pipe = redis.pipeline();
    }
  }
  pipe.set(keys.version, String(placement.placements.length));
  await pipe.exec();
}
