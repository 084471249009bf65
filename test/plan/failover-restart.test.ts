// A host that is down (Host.down: lost past the restart point, or fenced) in the scheduler and the
// planner: its protected instances restart on the failover hosts reserved for them, highest
// failover priority first when the reserve falls short; the down host takes nothing and is no
// failover target; the plan says "restart" with the host they came from and never calls it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Fleet } from '../../src/model/fleet.js';
import type { FleetDocument } from '../../src/model/fleet-spec.generated.js';
import { recordedAfterAction } from '../../src/model/instances.js';
import type { ObservedState } from '../../src/model/observed.js';
import type { PlanAction } from '../../src/model/plan.js';
import { makePlan } from '../../src/plan/make-plan.js';
import { isRestart, restartsOnly } from '../../src/plan/restarts.js';
import { schedule } from '../../src/scheduler/schedule.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { aFleetDocument, aGroup, aHost } from '../helpers/spec-builders.js';

type HostSpec = FleetDocument['spec']['hosts'][number];
const host = (name: string, memoryMiB = 8192): HostSpec =>
  aHost({
    name,
    cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 1 },
    memoryMiB,
    diskGiB: 500,
  });

function fleetOf(spec: Partial<FleetDocument['spec']>): Fleet {
  return normalizeFleet(
    aFleetDocument({ licenses: [], patchBaselines: [], failover: { tolerate: 1 }, ...spec }),
  );
}

const down = (fleet: Fleet, ...names: string[]): Fleet => ({
  ...fleet,
  hosts: fleet.hosts.map((h) => (names.includes(h.name) ? { ...h, down: true as const } : h)),
});

/** The observed state of a placement, every instance running at generation 1. */
function observedOf(fleet: Fleet): ObservedState {
  const placement = schedule(fleet);
  return {
    version: 7,
    instances: placement.placements.map((p) => ({
      instance: p.instance,
      group: p.group,
      host: p.host,
      generation: 1,
      status: 'running' as const,
      image: fleet.groups.find((g) => g.name === p.group)?.image ?? '',
      resources: fleet.groups.find((g) => g.name === p.group)?.resources ?? {
        vcpus: 0,
        memoryMiB: 0,
        diskGiB: 0,
      },
      failoverHost: p.failoverHost,
    })),
  };
}

const meta = { id: 'p1', specHash: 'h' };

describe('a down host in the scheduler and the plan', () => {
  it('restarts each protected instance on the failover host reserved for it, and says so', () => {
    const fleet = fleetOf({
      hosts: [host('a'), host('b'), host('c')],
      instances: [
        aGroup({
          name: 'db',
          replicas: 2,
          resources: { vcpus: 1, memoryMiB: 2048 },
          failover: true,
        }),
      ],
    });
    const observed = observedOf(fleet);
    const victim = observed.instances[0]?.host as string;
    const onVictim = observed.instances.filter((i) => i.host === victim);
    assert.ok(onVictim.length > 0);
    const degraded = down(fleet, victim);
    const placement = schedule(degraded, { instances: observed.instances });
    for (const before of onVictim) {
      const now = placement.placements.find((p) => p.instance === before.instance);
      assert.equal(now?.host, before.failoverHost, `${before.instance} on its reserved host`);
      assert.notEqual(now?.failoverHost, victim, 'a down host is no failover target');
    }
    assert.ok(placement.placements.every((p) => p.host !== victim && p.failoverHost !== victim));
    const plan = makePlan(degraded, placement, observed, meta);
    const restarts = plan.actions.filter(isRestart);
    assert.deepEqual(
      restarts.map((a) => [a.instance, a.kind, a.fromHost, a.generation, a.priority]),
      onVictim.map((i) => [i.instance, 'create', victim, 2, 'medium']),
    );
    assert.ok(restarts.every((a) => a.reason === `restart: ${victim} is down`));
    // Nothing in the plan runs on the down host.
    assert.ok(plan.actions.every((a) => a.host !== victim));
    // Without the host down, the same observation plans no restart.
    const same = makePlan(
      fleet,
      schedule(fleet, { instances: observed.instances }),
      observed,
      meta,
    );
    assert.equal(same.actions.filter(isRestart).length, 0);
  });

  it('restarts high priority first when the reserve is short (two hosts down at once)', () => {
    // Three hosts, tolerate 1: the reserve covers one host's loss. Two go down: the survivor
    // cannot take everything, and the high-priority group gets the room first.
    const fleet = fleetOf({
      hosts: [host('a', 4096), host('b', 4096), host('c', 4096)],
      instances: [
        aGroup({
          name: 'low',
          replicas: 1,
          resources: { vcpus: 1, memoryMiB: 1500 },
          failover: { priority: 'low' },
        } as never),
        aGroup({
          name: 'high',
          replicas: 1,
          resources: { vcpus: 1, memoryMiB: 1500 },
          failover: { priority: 'high' },
        } as never),
      ],
    });
    assert.equal(fleet.groups.find((g) => g.name === 'high')?.failoverPriority, 'high');
    const observed: ObservedState = {
      version: 1,
      instances: [
        { ...base('low-0', 'low'), host: 'a', failoverHost: 'c' },
        { ...base('high-0', 'high'), host: 'b', failoverHost: 'c' },
        { ...base('other-0', 'other'), host: 'c', failoverHost: null },
      ],
    };
    const fleetWithOther = {
      ...fleet,
      groups: [
        ...fleet.groups,
        {
          ...(fleet.groups[0] as Fleet['groups'][number]),
          name: 'other',
          failover: false,
          resources: { vcpus: 1, memoryMiB: 2000, diskGiB: 10 },
        },
      ],
    };
    const placement = schedule(down(fleetWithOther, 'a', 'b'), { instances: observed.instances });
    // c has room for one more: high-0 restarts there, unprotected (no host is left to reserve on).
    const high = placement.placements.find((p) => p.instance === 'high-0');
    assert.equal(high?.host, 'c');
    assert.equal(high?.failoverHost, null);
    assert.equal(
      placement.placements.find((p) => p.instance === 'low-0'),
      undefined,
    );
    assert.ok(placement.unplaceable.some((u) => u.instance === 'low-0'));
    const plan = makePlan(down(fleetWithOther, 'a', 'b'), placement, observed, meta);
    const restart = plan.actions.find((a) => a.instance === 'high-0');
    assert.equal(restart?.priority, 'high');
    // The restarts-only plan the controller runs without --auto-apply keeps just that.
    assert.deepEqual(
      restartsOnly(plan).actions.map((a) => a.id),
      ['high-0.create'],
    );
  });
});

describe('failback', () => {
  const fleetWith = (failback: 'manual' | 'auto') =>
    normalizeFleet(
      aFleetDocument({
        licenses: [],
        patchBaselines: [],
        failover: { tolerate: 1, failback },
        hosts: [host('a'), host('b'), host('c')],
        instances: [
          aGroup({
            name: 'db',
            replicas: 1,
            resources: { vcpus: 1, memoryMiB: 2048 },
            failover: true,
          }),
        ],
      }),
    );

  it('a restart remembers the host it left; manual leaves it there, auto moves it back once that host is up', () => {
    const fleet = fleetWith('manual');
    const observed = observedOf(fleet);
    const first = observed.instances[0] as ObservedState['instances'][number];
    const degraded = down(fleet, first.host);
    const restart = makePlan(
      degraded,
      schedule(degraded, { instances: observed.instances }),
      observed,
      meta,
    ).actions.find(isRestart);
    assert.equal(restart?.homeHost, first.host);
    assert.equal(restart?.host, first.failoverHost);
    // The record the restart's job writes keeps it (model/instances.ts).
    const recorded = recordedAfterAction(
      restart?.host as string,
      {
        instance: first.instance,
        group: first.group,
        generation: 2,
        status: 'running',
        image: first.image,
        resources: first.resources,
        packages: {},
      },
      restart as PlanAction,
    );
    assert.equal(recorded.homeHost, first.host);
    assert.equal(Object.keys(recorded).at(-1), 'packages');
    const after: ObservedState = { version: 8, instances: [recorded] };
    // The home host is up again. Manual: nothing moves.
    const manual = makePlan(fleet, schedule(fleet, { instances: after.instances }), after, meta);
    assert.equal(manual.actions.filter((a) => a.kind === 'move').length, 0);
    // Auto: a move back, shown as a failback; back home, the record has no home any more.
    const auto = fleetWith('auto');
    const back = makePlan(auto, schedule(auto, { instances: after.instances }), after, meta);
    const move = back.actions.find((a) => a.kind === 'move');
    assert.equal(move?.host, first.host);
    assert.equal(move?.fromHost, restart?.host);
    assert.match(move?.reason ?? '', /failback/);
    assert.equal(move?.homeHost, undefined);
    const reported = {
      instance: first.instance,
      group: first.group,
      generation: 3,
      status: 'running' as const,
      image: first.image,
      resources: first.resources,
      packages: {},
    };
    const home = recordedAfterAction(first.host, reported, move as PlanAction);
    assert.equal(home.homeHost, undefined);
  });
});

function base(instance: string, group: string) {
  return {
    instance,
    group,
    generation: 1,
    status: 'running' as const,
    image: 'debian-12',
    resources: { vcpus: 1, memoryMiB: 1500, diskGiB: 10 },
  };
}
