// The planner, case by case, and the property that matters most: applying a plan and planning
// again gives no changes.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { renderPlanText } from '../../src/cli/views/plan-view.js';
import type { Fleet } from '../../src/model/fleet.js';
import type { FleetDocument } from '../../src/model/fleet-spec.generated.js';
import {
  EMPTY_STATE,
  type ObservedInstance,
  type ObservedState,
} from '../../src/model/observed.js';
import type { Plan } from '../../src/model/plan.js';
import { makePlan } from '../../src/plan/make-plan.js';
import { parsePlan, serializePlan } from '../../src/plan/plan-file.js';
import { planJobs } from '../../src/queue/plan-jobs.js';
import { schedule } from '../../src/scheduler/schedule.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { rootFleet } from '../helpers/root-fleet.js';
import { aFleetDocument, aGroup, aHost, anImage } from '../helpers/spec-builders.js';

const meta = { id: 'p1', specHash: 'h' };

function planFor(fleet: Fleet, observed: ObservedState = EMPTY_STATE): Plan {
  return makePlan(fleet, schedule(fleet, { instances: observed.instances }), observed, meta);
}

/** What the state would be after every action of the plan succeeded. */
function applied(fleet: Fleet, plan: Plan, before: ObservedState): ObservedState {
  const byName = new Map(before.instances.map((o) => [o.instance, o]));
  for (const a of plan.actions) {
    if (a.kind === 'destroy') {
      byName.delete(a.instance);
      continue;
    }
    const previous = byName.get(a.instance);
    const imagePackages = fleet.images.find((i) => i.name === a.image)?.packages ?? {};
    const packages =
      a.kind === 'patch'
        ? { ...(previous?.packages ?? imagePackages), ...a.packages }
        : a.kind === 'create' || a.kind === 'update'
          ? imagePackages
          : (previous?.packages ?? imagePackages);
    const record: ObservedInstance = {
      instance: a.instance,
      group: a.group,
      host: a.host,
      generation: a.generation,
      status: 'running',
      image: a.image,
      resources: a.resources,
      failoverHost: a.failoverHost,
      packages,
    };
    byName.set(a.instance, record);
  }
  return { version: before.version + plan.actions.length, instances: [...byName.values()] };
}

const fleetOf = (spec: Partial<FleetDocument['spec']>) =>
  normalizeFleet(aFleetDocument({ licenses: [], patchBaselines: [], ...spec }));

/** The fleet's placement with each instance put where `hostOf` says (a scheduler's decision). */
function placedAt(fleet: Fleet, observed: ObservedState, hostOf: (instance: string) => string) {
  const placement = schedule(fleet, { instances: observed.instances });
  return {
    ...placement,
    placements: placement.placements.map((p) => ({ ...p, host: hostOf(p.instance) })),
  };
}

/**
 * Runs the plan's waves as apply does and checks what the dependencies promise, recomputed from
 * the actions alone: nothing lands on a host before everything leaving that host has left, and
 * an instance's own actions keep their order.
 */
function checkWaves(plan: Plan): void {
  const left = new Set<string>(); // instances gone from a host: `${instance}@${host}`
  const landed = new Set<string>();
  const leavers = plan.actions.flatMap((a) =>
    a.kind === 'destroy'
      ? [`${a.instance}@${a.host}`]
      : a.kind === 'move'
        ? [`${a.instance}@${a.fromHost}`]
        : [],
  );
  for (const wave of planJobs(plan)) {
    const leaving: string[] = [];
    for (const root of wave) {
      const a = root.data.action;
      if (root.leaving || a.kind === 'destroy') leaving.push(`${a.instance}@${root.data.host}`);
      if (root.leaving || a.kind === 'destroy' || a.kind === 'patch') continue;
      if (a.kind === 'create' || a.kind === 'move' || a.kind === 'update') {
        const waiting = leavers.filter(
          (l) => l.endsWith(`@${a.host}`) && !l.startsWith(`${a.instance}@`) && !left.has(l),
        );
        assert.deepEqual(waiting, [], `${a.id} lands on ${a.host} before they leave`);
      }
      if (a.kind === 'move' && !a.stopFirst) leaving.push(`${a.instance}@${a.fromHost}`);
      landed.add(a.instance);
    }
    for (const l of leaving) left.add(l);
  }
  for (const a of plan.actions) {
    if (a.kind !== 'destroy' && a.kind !== 'patch') assert.ok(landed.has(a.instance), a.id);
  }
}

const oneEach = (n: number) =>
  fleetOf({
    hosts: Array.from({ length: n }, (_, i) =>
      aHost({ name: `h${i}`, cpu: { sockets: 1, coresPerSocket: 2, threadsPerCore: 1 } }),
    ) as FleetDocument['spec']['hosts'],
    instances: Array.from({ length: n }, (_, i) =>
      aGroup({ name: `g${i}`, replicas: 1, resources: { vcpus: 2, memoryMiB: 1024, diskGiB: 5 } }),
    ),
  });

const runningOn = (fleet: Fleet, hostOf: (instance: string) => string): ObservedState => ({
  version: 1,
  instances: fleet.groups.map((g) => ({
    instance: `${g.name}-0`,
    group: g.name,
    host: hostOf(`${g.name}-0`),
    generation: 1,
    status: 'running',
    image: g.image,
    resources: g.resources,
    failoverHost: null,
  })),
});

describe('makePlan', () => {
  it('creates every instance of an empty fleet, in spec order, at generation 1', () => {
    const fleet = fleetOf({ instances: [aGroup({ replicas: 3 })] });
    const plan = planFor(fleet);
    assert.deepEqual(
      plan.actions.map((a) => [a.kind, a.instance, a.generation]),
      [
        ['create', 'web-0', 1],
        ['create', 'web-1', 1],
        ['create', 'web-2', 1],
      ],
    );
    assert.deepEqual(plan.summary, { create: 3, move: 0, update: 0, patch: 0, destroy: 0 });
    assert.match(
      renderPlanText(plan),
      /\n {2}\+ create web-0 on hv-0\d\n[\s\S]*Plan: 3 to create, 0 to move, 0 to update, 0 to patch, 0 to destroy\.\n$/,
    );
  });

  it("creates above a host's fence: a destroyed replica's tombstone, or a lost state", () => {
    const fleet = fleetOf({ instances: [aGroup({ replicas: 2 })] });
    const plan = planFor(fleet, { version: 3, instances: [], fences: { 'web-1': 4 } });
    assert.deepEqual(
      plan.actions.map((a) => [a.kind, a.instance, a.generation]),
      [
        ['create', 'web-0', 1],
        ['create', 'web-1', 5],
      ],
    );
  });

  it('plans nothing for a converged fleet', () => {
    const fleet = fleetOf({ instances: [aGroup({ replicas: 3 })] });
    const first = planFor(fleet);
    const second = planFor(fleet, applied(fleet, first, EMPTY_STATE));
    assert.deepEqual(second.actions, []);
    assert.match(
      renderPlanText(second),
      /^No changes\.[\s\S]*Plan: 0 to create, 0 to move, 0 to update, 0 to patch, 0 to destroy\.\n$/,
    );
  });

  it('scaling down destroys the highest replicas; a removed group is destroyed whole', () => {
    const fleet = fleetOf({
      instances: [aGroup({ replicas: 3 }), aGroup({ name: 'db', replicas: 1 })],
    });
    const state = applied(fleet, planFor(fleet), EMPTY_STATE);
    const smaller = fleetOf({ instances: [aGroup({ replicas: 1 })] });
    const plan = planFor(smaller, state);
    assert.deepEqual(
      plan.actions.map((a) => [a.kind, a.instance, a.reason]),
      [
        ['destroy', 'web-1', 'replica no longer wanted'],
        ['destroy', 'web-2', 'replica no longer wanted'],
        ['destroy', 'db-0', 'group removed from the spec'],
      ],
    );
    assert.ok(plan.actions.every((a) => a.generation === 2));
  });

  it('a resource change is an update in place, with the next generation', () => {
    const fleet = fleetOf({ instances: [aGroup({ replicas: 1 })] });
    const state = applied(fleet, planFor(fleet), EMPTY_STATE);
    const bigger = fleetOf({
      instances: [aGroup({ replicas: 1, resources: { vcpus: 4, memoryMiB: 2048, diskGiB: 10 } })],
    });
    const plan = planFor(bigger, state);
    assert.equal(plan.actions.length, 1);
    assert.deepEqual(
      [plan.actions[0]?.kind, plan.actions[0]?.reason, plan.actions[0]?.generation],
      ['update', 'vcpus 2 → 4', 2],
    );
    assert.match(renderPlanText(plan), / {2}~ update web-0 on hv-0\d: vcpus 2 → 4\n/);
  });

  it('a failover host that changes alone is a retarget: same generation, nothing recreated', () => {
    const fleet = fleetOf({ instances: [aGroup({ replicas: 1 })] });
    const state = applied(fleet, planFor(fleet), EMPTY_STATE);
    const record = state.instances[0] as ObservedInstance;
    const moved: ObservedState = {
      ...state,
      instances: [{ ...record, failoverHost: 'elsewhere' }],
    };
    const plan = planFor(fleet, moved);
    assert.deepEqual(
      plan.actions.map((a) => [a.kind, a.reason, a.generation, a.failoverHost]),
      [
        [
          'retarget',
          `failover host elsewhere → ${record.failoverHost ?? 'none'}`,
          record.generation,
          record.failoverHost,
        ],
      ],
    );
    assert.equal(plan.summary.update, 1);
    assert.match(
      renderPlanText(plan),
      / {2}~ retarget web-0 on hv-0\d: failover host elsewhere → .* \(in place, keeps running\)\n/,
    );
    // With a resource change too, it is an update, which records the failover host as well.
    const bigger = fleetOf({
      instances: [aGroup({ replicas: 1, resources: { vcpus: 4, memoryMiB: 2048, diskGiB: 10 } })],
    });
    const update = planFor(bigger, moved);
    assert.deepEqual(
      update.actions.map((a) => [a.kind, a.generation]),
      [['update', record.generation + 1]],
    );
    assert.match(update.actions[0]?.reason ?? '', /vcpus 2 → 4, failover host elsewhere → /);
  });

  it('an instance whose host left the fleet moves, after what leaves the target', () => {
    const fleet = fleetOf({ instances: [aGroup({ replicas: 1 })] });
    const state: ObservedState = {
      version: 7,
      instances: [
        {
          instance: 'web-0',
          group: 'web',
          host: 'gone',
          generation: 4,
          status: 'running',
          image: 'debian-12',
          resources: { vcpus: 2, memoryMiB: 2048, diskGiB: 10 },
          failoverHost: null,
        },
        {
          instance: 'old-0',
          group: 'old',
          host: 'hv-01',
          generation: 1,
          status: 'running',
          image: 'debian-12',
          resources: { vcpus: 1, memoryMiB: 512, diskGiB: 0 },
          failoverHost: null,
        },
        {
          instance: 'old-1',
          group: 'old',
          host: 'hv-02',
          generation: 1,
          status: 'running',
          image: 'debian-12',
          resources: { vcpus: 1, memoryMiB: 512, diskGiB: 0 },
          failoverHost: null,
        },
      ],
    };
    const plan = planFor(fleet, state);
    assert.equal(plan.stateVersion, 7);
    const move = plan.actions.find((a) => a.kind === 'move');
    assert.ok(move);
    assert.equal(move.fromHost, 'gone');
    assert.equal(move.generation, 5);
    const leaving = plan.actions.find((a) => a.kind === 'destroy' && a.host === move.host);
    assert.deepEqual(move.dependsOn, [leaving?.id]);
    assert.match(renderPlanText(plan), / {2}> move web-0 from gone to hv-0\d/);
  });

  it('a swap is no cycle: one move is stopped first, and the other waits only for it to leave', () => {
    const fleet = oneEach(2);
    const state = runningOn(fleet, (i) => (i === 'g0-0' ? 'h0' : 'h1'));
    const plan = makePlan(
      fleet,
      placedAt(fleet, state, (i) => (i === 'g0-0' ? 'h1' : 'h0')),
      state,
      meta,
    );
    const moves = plan.actions.filter((a) => a.kind === 'move');
    assert.equal(moves.length, 2);
    assert.deepEqual(
      moves.filter((a) => a.stopFirst).map((a) => a.instance),
      ['g0-0'],
    );
    const waves = planJobs(plan).map((w) => w.map((r) => r.jobId));
    assert.deepEqual(waves, [['p1.g0-0.vacate'], ['p1.g1-0.move-out'], ['p1.g0-0.move-in']]);
    checkWaves(plan);
    assert.match(
      renderPlanText(plan),
      /> move g0-0 from h0 to h1.*stopped first: a cycle of moves with g1-0/,
    );
  });

  it('any rotation of instances among hosts plans and runs without a cycle (random permutations)', () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 2, max: 7 })
          .chain((n) =>
            fc.tuple(fc.constant(n), fc.shuffledSubarray([...Array(n).keys()], { minLength: n })),
          ),
        ([n, perm]) => {
          const fleet = oneEach(n);
          const index = (i: string) => Number(i.slice(1, i.indexOf('-')));
          const state = runningOn(fleet, (i) => `h${index(i)}`);
          const plan = makePlan(
            fleet,
            placedAt(fleet, state, (i) => `h${perm[index(i)]}`),
            state,
            meta,
          );
          checkWaves(plan);
          const converged = applied(fleet, plan, state);
          for (const o of converged.instances) assert.equal(o.host, `h${perm[index(o.instance)]}`);
        },
      ),
      { numRuns: 300, seed: 21 },
    );
  });

  it('a stopped instance is started where it is', () => {
    const fleet = fleetOf({ instances: [aGroup({ replicas: 1 })] });
    const running = applied(fleet, planFor(fleet), EMPTY_STATE);
    const stopped = {
      ...running,
      instances: running.instances.map((o) => ({ ...o, status: 'stopped' as const })),
    };
    const plan = planFor(fleet, stopped);
    assert.deepEqual(
      plan.actions.map((a) => [a.kind, a.reason]),
      [['start', 'stopped, should be running']],
    );
  });

  it('patches a VM on a real host only when its image gives a way into the guest', () => {
    const vmImage = (name: string, guest: boolean) =>
      anImage({
        name,
        kind: 'vm',
        source: { disk: `images/${name}.qcow2` },
        packages: { openssl: '3.0.13-1~deb12u1' },
        ...(guest
          ? { guest: { hostKey: `ssh-ed25519 ${'A'.repeat(68)}`, identityFile: 'k' } }
          : {}),
      });
    const fleet = fleetOf({
      hosts: [aHost({ name: 'hv-01', engine: 'local', runs: ['vm'] })],
      images: [vmImage('open', true), vmImage('closed', false)],
      patchBaselines: [
        {
          name: 'sec',
          appliesTo: { family: 'debian', release: '12' },
          minimum: { openssl: '3.0.15-1~deb12u1' },
        },
      ],
      instances: [
        aGroup({ name: 'web', image: 'open', replicas: 1, patchBaseline: 'sec' }),
        aGroup({ name: 'db', image: 'closed', replicas: 1, patchBaseline: 'sec' }),
      ],
    });
    const plan = planFor(fleet);
    assert.deepEqual(
      plan.actions.filter((a) => a.kind === 'patch').map((a) => a.id),
      ['web-0.patch'],
    );
    // The way in travels with the plan: a saved plan's apply reaches the guest.
    assert.equal(plan.images.open?.guest?.identityFile, 'k');
    assert.equal(plan.images.closed?.guest, undefined);
  });

  it('patches what is below its baseline: after its own action, one replica of a group at a time', () => {
    const baseline = {
      name: 'sec',
      appliesTo: { family: 'debian' as const, release: '12' },
      minimum: { openssl: '3.0.15-1~deb12u1', libc6: '2.36-9+deb12u7' },
    };
    const fleet = fleetOf({
      images: [
        anImage({ packages: { openssl: '3.0.13-1~deb12u1', 'libc6:amd64': '2.36-9+deb12u9' } }),
      ],
      patchBaselines: [baseline],
      instances: [
        aGroup({ replicas: 3, patchBaseline: 'sec' }),
        aGroup({ name: 'db', replicas: 2, patchBaseline: 'sec' }),
        aGroup({ name: 'free', replicas: 1 }), // no baseline: never patched
      ],
    });
    const plan = planFor(fleet);
    const patches = plan.actions.filter((a) => a.kind === 'patch');
    assert.deepEqual(
      patches.map((a) => [a.id, a.generation, a.dependsOn]),
      [
        ['web-0.patch', 2, ['web-0.create']],
        ['web-1.patch', 2, ['web-1.create', 'web-0.patch']],
        ['web-2.patch', 2, ['web-2.create', 'web-1.patch']],
        ['db-0.patch', 2, ['db-0.create']],
        ['db-1.patch', 2, ['db-1.create', 'db-0.patch']],
      ],
    );
    // Only what is below the minimum, under the name the inventory has it.
    assert.deepEqual(patches[3]?.packages, { openssl: '3.0.15-1~deb12u1' });
    assert.match(
      renderPlanText(plan),
      /\^ patch web-0 on hv-0\d: openssl 3\.0\.13-1~deb12u1 → 3\.0\.15-1~deb12u1 \(baseline sec\)/,
    );
    assert.equal(plan.summary.patch, 5);
    const converged = applied(fleet, plan, EMPTY_STATE);
    assert.deepEqual(planFor(fleet, converged).actions, []);
    // A host that reports an older package again (a rollback) gets one patch, at the next generation.
    const rolledBack = {
      ...converged,
      instances: converged.instances.map((o) =>
        o.instance === 'web-1'
          ? { ...o, packages: { ...o.packages, openssl: '3.0.11-1~deb12u2' } }
          : o,
      ),
    };
    assert.deepEqual(
      planFor(fleet, rolledBack).actions.map((a) => [a.id, a.generation, a.dependsOn]),
      [['web-1.patch', 3, []]],
    );
    // A missing package is installed at the minimum.
    const missing = {
      ...converged,
      instances: converged.instances.map((o) =>
        o.instance === 'db-0' ? { ...o, packages: { openssl: '3.0.15-1~deb12u1' } } : o,
      ),
    };
    assert.deepEqual(planFor(fleet, missing).actions[0]?.packages, { libc6: '2.36-9+deb12u7' });
  });

  it('a baseline for another OS, or an image of another family, plans no patch', () => {
    const fleet = fleetOf({
      images: [anImage({ packages: {} })],
      patchBaselines: [
        { name: 'rhel', appliesTo: { family: 'rhel' }, minimum: { openssl: '3.0.7-27.el9' } },
      ],
      instances: [aGroup({ replicas: 2, patchBaseline: 'rhel' })],
    });
    assert.equal(planFor(fleet).summary.patch, 0);
  });

  it('plans patches on real hosts for sandboxes only: their VMs cannot raise versions yet (the audit reports them)', () => {
    const fleet = fleetOf({
      patchBaselines: [
        {
          name: 'debian-12-security',
          appliesTo: { family: 'debian', release: '12' },
          minimum: { openssl: '3.0.15-1~deb12u1' },
        },
      ],
      hosts: [aHost({ name: 'hv-01', engine: 'local' }), aHost({ name: 'hv-02', engine: 'ssh' })],
      images: [
        anImage({ packages: { openssl: '3.0.13-1~deb12u1' } }),
        anImage({
          name: 'debian-12-vm',
          kind: 'vm',
          source: { disk: 'images/debian-12.qcow2' },
          packages: { openssl: '3.0.13-1~deb12u1' },
        }),
      ],
      instances: [
        aGroup({ replicas: 2, patchBaseline: 'debian-12-security' }),
        aGroup({
          name: 'vms',
          image: 'debian-12-vm',
          replicas: 2,
          patchBaseline: 'debian-12-security',
        }),
      ],
    });
    const plan = planFor(fleet);
    assert.equal(plan.summary.create, 4);
    assert.deepEqual(
      plan.actions.filter((a) => a.kind === 'patch').map((a) => [a.id, a.packages]),
      [
        ['web-0.patch', { openssl: '3.0.15-1~deb12u1' }],
        ['web-1.patch', { openssl: '3.0.15-1~deb12u1' }],
      ],
    );
  });

  it('shows license use before → after per pool', () => {
    const fleet = rootFleet();
    const plan = planFor(fleet);
    assert.deepEqual(
      plan.licenses.map((l) => [l.pool, l.before, l.after]),
      [
        ['windows-datacenter', 32, 32],
        ['rhel-vdc', 0, 2],
        ['backup-agent', 0, 3],
      ],
    );
    const text = renderPlanText(plan);
    assert.match(text, /rhel-vdc \(host-socket-pair\): 0 → 2 of 4 \(\+2\)/);
    assert.match(text, /Failover: 15 of 15 protected instances covered/);
    assert.match(text, /Plan: 26 to create, 0 to move, 0 to update, 6 to patch, 0 to destroy\.\n$/);
    const again = planFor(fleet, applied(fleet, plan, EMPTY_STATE));
    assert.deepEqual(
      again.licenses.map((l) => l.before),
      again.licenses.map((l) => l.after),
    );
  });

  it('flags an entitlement the fleet would exceed; instances that cannot be placed keep counting', () => {
    const fleet = rootFleet();
    const running = applied(fleet, planFor(fleet), EMPTY_STATE);
    // A true-up: the spec now owns 16 Datacenter cores and 2 backup agents.
    const smaller: Fleet = {
      ...fleet,
      licenses: fleet.licenses.map((p) =>
        p.name === 'windows-datacenter'
          ? { ...p, entitlement: 16 }
          : p.name === 'backup-agent'
            ? { ...p, entitlement: 2 }
            : p,
      ),
    };
    const plan = planFor(smaller, running);
    assert.ok(plan.unplaceable.length > 0, 'the Windows VMs no longer fit the entitlement');
    assert.deepEqual(
      plan.licenses.map((l) => [l.pool, l.before, l.after, l.entitlement]),
      [
        ['windows-datacenter', 32, 32, 16],
        ['rhel-vdc', 2, 2, 4],
        ['backup-agent', 3, 3, 2],
      ],
    );
    const text = renderPlanText(plan);
    assert.match(
      text,
      /windows-datacenter \(host-core\): 32 → 32 of 16 \(unchanged\) {2}EXCEEDS the entitlement by 16/,
    );
    assert.match(
      text,
      /backup-agent \(instance\): 3 → 3 of 2 \(unchanged\) {2}EXCEEDS the entitlement by 1/,
    );
    assert.doesNotMatch(text, /rhel-vdc.*EXCEEDS/);
  });

  it('a saved plan reads back the same, and anything else is refused with a reason', () => {
    const fleet = fleetOf({ instances: [aGroup({ replicas: 2 })] });
    const plan = planFor(fleet);
    assert.deepEqual(parsePlan(serializePlan(plan)), {
      ok: true,
      plan: JSON.parse(serializePlan(plan)),
    });
    assert.deepEqual(parsePlan('{'), { ok: false, reason: 'not JSON' });
    assert.equal(parsePlan(JSON.stringify({ ...plan, formatVersion: '9' })).ok, false);
    assert.equal(parsePlan(JSON.stringify({ ...plan, actions: [{ kind: 'explode' }] })).ok, false);
  });

  it('applying a plan and planning again gives no changes (random fleets and edits)', () => {
    const fleetFrom = (replicas: number[], vcpus: number) =>
      fleetOf({
        instances: replicas.map((n, i) =>
          aGroup({ name: `g${i}`, replicas: n, resources: { vcpus, memoryMiB: 1024, diskGiB: 5 } }),
        ),
      });
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 4 }),
        fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 1, max: 4 }),
        (before, after, vcpus) => {
          const first = fleetFrom(before, 2);
          const state = applied(first, planFor(first), EMPTY_STATE);
          const second = fleetFrom(after, vcpus);
          const plan = planFor(second, state);
          const converged = applied(second, plan, state);
          assert.deepEqual(planFor(second, converged).actions, []);
          for (const a of plan.actions) {
            const was = state.instances.find((o) => o.instance === a.instance);
            assert.equal(a.generation, (was?.generation ?? 0) + 1);
          }
        },
      ),
      { numRuns: 200, seed: 5 },
    );
  });
});
