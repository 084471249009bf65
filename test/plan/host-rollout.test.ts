// plan/host-rollout.ts (docs/patching.md, "Hosts"): every host to patch is in exactly one wave,
// no wave takes down more failure domains than the failover policy tolerates (one with
// `tolerate: 0`), and with a wave's hosts draining the scheduler still places every instance it
// placed before — checked against schedule() itself, for random fleets.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Fleet, failureDomainOf } from '../../src/model/fleet.js';
import type { ObservedPlacement } from '../../src/model/placement.js';
import { domainsPerWave, drainLoses, planHostRollout } from '../../src/plan/host-rollout.js';
import { schedule } from '../../src/scheduler/schedule.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { aFleetDocument, aGroup, aHost } from '../helpers/spec-builders.js';

interface Shape {
  readonly racks: number;
  readonly perRack: number;
  readonly tolerate: number;
  readonly domain: 'host' | 'rack';
  readonly replicas: number;
  readonly protectedReplicas: number;
  readonly memoryMiB: number;
}

function fleetOf(s: Shape): Fleet {
  const hosts: ReturnType<typeof aHost>[] = [];
  for (let r = 0; r < s.racks; r++) {
    for (let h = 0; h < s.perRack; h++) {
      hosts.push(
        aHost({
          name: `hv-${r}-${h}`,
          labels: { rack: `r${r}` },
          memoryMiB: s.memoryMiB,
          cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 1 },
        }),
      );
    }
  }
  return normalizeFleet(
    aFleetDocument({
      hosts: hosts as [ReturnType<typeof aHost>, ...ReturnType<typeof aHost>[]],
      licenses: [],
      failover: { tolerate: s.tolerate, domain: s.domain },
      instances: [
        aGroup({ name: 'web', replicas: s.replicas }),
        aGroup({ name: 'db', replicas: s.protectedReplicas, failover: true }),
      ],
    }),
  );
}

/** Where the scheduler puts everything now: what the rollout starts from. */
function observedOf(fleet: Fleet): ObservedPlacement {
  return {
    instances: schedule(fleet).placements.map((p) => ({
      instance: p.instance,
      host: p.host,
      failoverHost: p.failoverHost ?? null,
    })),
  };
}

const shapes = fc.record({
  racks: fc.integer({ min: 1, max: 4 }),
  perRack: fc.integer({ min: 1, max: 3 }),
  // The scheduler reserves for one failed domain at most (docs/scheduler.md).
  tolerate: fc.integer({ min: 0, max: 1 }),
  domain: fc.constantFrom('host' as const, 'rack' as const),
  replicas: fc.integer({ min: 0, max: 12 }),
  protectedReplicas: fc.integer({ min: 0, max: 4 }),
  memoryMiB: fc.constantFrom(8192, 16384, 65536),
});

describe('planHostRollout', () => {
  it('puts every host in one wave, within the tolerance, each wave placeable elsewhere', () => {
    fc.assert(
      fc.property(shapes, (s) => {
        const fleet = fleetOf(s);
        const observed = observedOf(fleet);
        const names = fleet.hosts.map((h) => h.name);
        const rollout = planHostRollout(fleet, observed, names);
        const before = new Set(schedule(fleet, observed).unplaceable.map((u) => u.instance));
        if (!rollout.ok) {
          // Refused only when that host alone cannot be drained: say so with schedule().
          const alone: Fleet = {
            ...fleet,
            hosts: fleet.hosts.map((h) => (h.name === rollout.host ? { ...h, drain: true } : h)),
          };
          const lost = schedule(alone, observed).unplaceable.filter((u) => !before.has(u.instance));
          assert.ok(lost.length > 0, `refused ${rollout.host}, which drains alone`);
          return;
        }
        const waved = rollout.waves.flatMap((w) => w.hosts);
        assert.deepEqual([...waved].sort(), [...names].sort(), 'every host exactly once');
        for (const w of rollout.waves) {
          const domains = new Set(
            w.hosts.map((n) => failureDomainOf(fleet, fleet.hosts.find((h) => h.name === n)!)),
          );
          assert.ok(domains.size <= domainsPerWave(fleet), `wave ${w.hosts} over the tolerance`);
          assert.ok(domains.size <= Math.max(1, s.tolerate));
          const drained: Fleet = {
            ...fleet,
            hosts: fleet.hosts.map((h) => (w.hosts.includes(h.name) ? { ...h, drain: true } : h)),
          };
          const lost = schedule(drained, observed).unplaceable.filter(
            (u) => !before.has(u.instance),
          );
          assert.deepEqual(lost, [], `wave ${w.hosts} cannot be drained`);
        }
      }),
      { numRuns: 60, seed: 16 },
    );
  });

  it('takes one rack a wave with domain: rack, tolerate: 1', () => {
    const fleet = fleetOf({
      racks: 3,
      perRack: 2,
      tolerate: 1,
      domain: 'rack',
      replicas: 4,
      protectedReplicas: 2,
      memoryMiB: 65536,
    });
    const rollout = planHostRollout(fleet, observedOf(fleet), ['hv-2-1', 'hv-0-0', 'hv-0-1']);
    assert.ok(rollout.ok);
    // Two racks left: each protected instance keeps a failover host while a rack is drained.
    assert.deepEqual(
      rollout.waves.map((w) => [w.covered, w.protected]),
      [
        [2, 2],
        [2, 2],
      ],
    );
    assert.deepEqual(
      rollout.waves.map((w) => [w.hosts, w.domains]),
      [
        [['hv-0-0', 'hv-0-1'], ['r0']],
        [['hv-2-1'], ['r2']],
      ],
    );
  });

  it('splits a rack the others cannot absorb whole, and refuses a host that cannot drain', () => {
    // Two racks of two 8 GiB hosts, ten 2 GiB sandboxes: a whole rack cannot drain, one host can.
    const tight = fleetOf({
      racks: 2,
      perRack: 2,
      tolerate: 1,
      domain: 'rack',
      replicas: 10,
      protectedReplicas: 0,
      memoryMiB: 8192,
    });
    const rollout = planHostRollout(
      tight,
      observedOf(tight),
      tight.hosts.map((h) => h.name),
    );
    assert.ok(rollout.ok, JSON.stringify(rollout));
    assert.deepEqual(
      rollout.waves.map((w) => w.hosts.length),
      [1, 1, 1, 1],
    );
    // One host holding more than the only other host can take: refused before anything starts.
    const full = fleetOf({
      racks: 2,
      perRack: 1,
      tolerate: 1,
      domain: 'host',
      replicas: 6,
      protectedReplicas: 0,
      memoryMiB: 8192,
    });
    const refused = planHostRollout(full, observedOf(full), ['hv-0-0']);
    assert.ok(!refused.ok);
    assert.equal(refused.host, 'hv-0-0');
    const lost = drainLoses(full, observedOf(full), ['hv-0-0']);
    assert.ok(lost.length > 0);
    assert.deepEqual(refused.unplaceable, lost);
    assert.deepEqual(drainLoses(full, observedOf(full), []), [], 'nothing drained loses nothing');
  });
});
