// Scheduler behaviour, case by case (small builders, named cases), then properties over random
// fleets checked by an independent re-computation (invariants.ts).
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { readAndLoadFleet } from '../../src/app/read-spec.js';
import { isVfleetError } from '../../src/model/errors.js';
import type { Fleet } from '../../src/model/fleet.js';
import type { FleetDocument } from '../../src/model/fleet-spec.generated.js';
import { vmMemoryOverheadMiB } from '../../src/scheduler/capacity.js';
import { explain, schedule } from '../../src/scheduler/schedule.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { fromRoot } from '../helpers/paths.js';
import { rootFleet } from '../helpers/root-fleet.js';
import { aFleetDocument, aGroup, aHost, anImage } from '../helpers/spec-builders.js';
import { checkInvariants } from './invariants.js';

const small = (
  name: string,
  rack: string,
  memoryMiB = 16384,
  extra: Partial<ReturnType<typeof aHost>> = {},
) =>
  aHost({
    name,
    labels: { rack },
    cpu: { sockets: 1, coresPerSocket: 8, threadsPerCore: 1 },
    memoryMiB,
    diskGiB: 500,
    ...extra,
  });

type HostSpec = FleetDocument['spec']['hosts'][number];
function fleetOf(
  spec: Omit<Partial<FleetDocument['spec']>, 'hosts'> & { hosts?: HostSpec[] },
): Fleet {
  return normalizeFleet(
    aFleetDocument({ licenses: [], patchBaselines: [], ...spec } as Partial<FleetDocument['spec']>),
  );
}
const hostOf = (placement: ReturnType<typeof schedule>, instance: string) =>
  placement.placements.find((p) => p.instance === instance)?.host;

describe('schedule: capacity and fit', () => {
  it('binpack fills the fullest host in use that fits, and opens the largest empty host last', () => {
    const fleet = fleetOf({
      hosts: [
        small('a', 'r1', 16384),
        small('b', 'r1', 8192),
        small('c', 'r1', 32768, { cpu: { sockets: 2, coresPerSocket: 8, threadsPerCore: 1 } }),
        small('d', 'r1', 4096),
      ],
      instances: [
        // Memory per vCPU alike, so that the order is the one of placementOrder (no mixing).
        aGroup({ name: 'big', replicas: 1, resources: { vcpus: 3, memoryMiB: 3000 } }),
        aGroup({
          name: 'web',
          replicas: 2,
          resources: { vcpus: 1, memoryMiB: 1000 },
          placement: { avoid: ['web'] },
        }),
      ],
    });
    const placement = schedule(fleet);
    // web (constrained) goes first: web-0 opens the largest empty host, web-1 (which avoids it)
    // the next largest; big then fits on both, and takes the one with less room left.
    assert.equal(hostOf(placement, 'web-0'), 'c');
    assert.equal(hostOf(placement, 'web-1'), 'a');
    assert.equal(hostOf(placement, 'big-0'), 'a');
  });

  it('among hosts in use, binpack picks the one with the least room left that fits', () => {
    const fleet = fleetOf({
      hosts: [small('a', 'r1', 16384), small('b', 'r1', 16384)],
      instances: [
        aGroup({
          name: 'x',
          replicas: 2,
          resources: { vcpus: 1, memoryMiB: 6000 },
          placement: { avoid: ['x'] },
        }),
        aGroup({
          name: 'y',
          replicas: 1,
          resources: { vcpus: 1, memoryMiB: 4000 },
          placement: { avoid: ['z'] },
        }),
        aGroup({ name: 'z', replicas: 1, resources: { vcpus: 1, memoryMiB: 9000 } }),
      ],
    });
    const placement = schedule(fleet);
    // z (9000) goes beside one x (10384 left → 1384); y (4000) then fits only on the other host.
    assert.notEqual(hostOf(placement, 'x-0'), hostOf(placement, 'x-1'));
    assert.notEqual(hostOf(placement, 'y-0'), hostOf(placement, 'z-0'));
    assert.equal(placement.unplaceable.length, 0);
  });

  it('memory-heavy and vCPU-heavy replicas arrive mixed, so hosts fill in both resources', () => {
    // 4 VMs heavy in memory (1 vCPU, ~3.9 GiB) and 12 light containers (1 vCPU, 512 MiB) on two
    // 8-vCPU / 16 GiB hosts: all 16 fit only as 2 VMs + 6 containers per host. All the VMs
    // first (largest first alone) would fill one host's memory with 4 of its vCPUs idle.
    const fleet = fleetOf({
      hosts: [small('a', 'r1', 16384), small('b', 'r1', 16384)],
      images: [anImage(), anImage({ name: 'vm', kind: 'vm', source: { disk: 'd.qcow2' } })],
      instances: [
        aGroup({ name: 'db', image: 'vm', replicas: 4, resources: { vcpus: 1, memoryMiB: 3900 } }),
        aGroup({ name: 'web', replicas: 12, resources: { vcpus: 1, memoryMiB: 512 } }),
      ],
    });
    const placement = schedule(fleet);
    assert.deepEqual(placement.unplaceable, []);
    assert.deepEqual(
      placement.hosts.map((h) => h.used.vcpus),
      [8, 8],
    );
    assert.deepEqual(checkInvariants(fleet, placement), []);
  });

  it('spread strategy puts it on the emptiest host', () => {
    const fleet = fleetOf({
      hosts: [small('a', 'r1', 16384), small('b', 'r1', 8192)],
      instances: [
        aGroup({
          replicas: 1,
          resources: { vcpus: 1, memoryMiB: 2000 },
          placement: { strategy: 'spread' },
        }),
      ],
    });
    assert.equal(hostOf(schedule(fleet), 'web-0'), 'a');
  });

  it('counts vCPUs against threads x overcommit', () => {
    const hosts = [small('a', 'r1', 65536, { overcommit: { cpu: 2 } })]; // 8 threads x 2 = 16 vCPUs
    const fleet = fleetOf({
      hosts,
      instances: [aGroup({ replicas: 5, resources: { vcpus: 4, memoryMiB: 512 } })],
    });
    const placement = schedule(fleet);
    assert.equal(placement.placements.length, 4);
    assert.deepEqual(placement.unplaceable[0]?.reasons, { 'insufficient-cpu': 1 });
  });

  it("a VM pays QEMU's memory overhead; a container does not", () => {
    const guest = 8192;
    const hosts = [small('a', 'r1', guest + vmMemoryOverheadMiB(2, guest) - 1)];
    const vm = anImage({ name: 'vm', kind: 'vm', source: { disk: 'd.qcow2' } });
    const spec = (image: string) =>
      fleetOf({
        hosts,
        images: [anImage(), vm],
        instances: [aGroup({ image, replicas: 1, resources: { vcpus: 2, memoryMiB: guest } })],
      });
    assert.equal(schedule(spec('debian-12')).placements.length, 1);
    assert.deepEqual(schedule(spec('vm')).unplaceable[0]?.reasons, { 'insufficient-memory': 1 });
  });

  it('reports, per unplaceable instance, how many hosts each check ruled out', () => {
    const fleet = fleetOf({
      hosts: [
        small('a', 'r1'),
        small('b', 'r1', 16384, { runs: ['vm'] }),
        small('c', 'r1', 16384, { os: { family: 'debian', release: '11', arch: 'x86_64' } }),
        small('d', 'r1', 1024),
      ],
      instances: [
        aGroup({
          replicas: 2,
          resources: { vcpus: 1, memoryMiB: 12000 },
          placement: { requireLabels: { rack: 'r1' } },
        }),
      ],
    });
    const placement = schedule(fleet);
    assert.equal(placement.placements.length, 1);
    assert.deepEqual(placement.unplaceable, [
      {
        instance: 'web-1',
        group: 'web',
        reasons: { 'insufficient-memory': 2, 'os-mismatch': 1, 'runs-no-container': 1 },
      },
    ]);
  });
});

describe('schedule: constraints', () => {
  const racks = [small('a1', 'r1'), small('a2', 'r1'), small('b1', 'r2'), small('b2', 'r2')];

  it('a draining host takes nothing new, and what it runs is placed elsewhere', () => {
    const hosts = [
      small('a', 'r1', 16384, { drain: true } as Partial<ReturnType<typeof aHost>>),
      small('b', 'r1', 16384),
    ];
    const fleet = fleetOf({
      hosts,
      instances: [aGroup({ replicas: 2, resources: { vcpus: 1, memoryMiB: 1024 } })],
    });
    const observed = {
      instances: [{ instance: 'web-0', host: 'a', failoverHost: null }],
    };
    const placement = schedule(fleet, observed);
    assert.deepEqual(
      placement.placements.map((p) => [p.instance, p.host]),
      [
        ['web-0', 'b'],
        ['web-1', 'b'],
      ],
    );
    const one = fleetOf({
      hosts: [hosts[0] as HostSpec],
      instances: [aGroup({ replicas: 1, resources: { vcpus: 1, memoryMiB: 1024 } })],
    });
    assert.deepEqual(schedule(one).unplaceable[0]?.reasons, { 'host-draining': 1 });
  });

  it('a group that avoids itself puts one replica per host', () => {
    const fleet = fleetOf({
      hosts: racks,
      instances: [
        aGroup({
          replicas: 5,
          resources: { vcpus: 1, memoryMiB: 512 },
          placement: { avoid: ['web'] },
        }),
      ],
    });
    const placement = schedule(fleet);
    assert.equal(new Set(placement.placements.map((p) => p.host)).size, 4);
    assert.deepEqual(placement.unplaceable[0]?.reasons, { 'anti-affinity': 4 });
  });

  it('anti-affinity is symmetric', () => {
    const fleet = fleetOf({
      hosts: [small('a', 'r1'), small('b', 'r1')],
      instances: [
        aGroup({ name: 'db', replicas: 1, resources: { vcpus: 1, memoryMiB: 512 } }),
        aGroup({
          name: 'web',
          replicas: 1,
          resources: { vcpus: 1, memoryMiB: 512 },
          placement: { avoid: ['db'] },
        }),
      ],
    });
    const placement = schedule(fleet);
    assert.notEqual(hostOf(placement, 'db-0'), hostOf(placement, 'web-0'));
  });

  it('spread keeps replicas balanced over a label (max skew 1)', () => {
    const fleet = fleetOf({
      hosts: [...racks, small('c1', 'r3')],
      instances: [
        aGroup({
          replicas: 7,
          resources: { vcpus: 1, memoryMiB: 512 },
          placement: { spread: 'rack' },
        }),
      ],
    });
    const placement = schedule(fleet);
    const perRack: Record<string, number> = { r1: 0, r2: 0, r3: 0 };
    for (const p of placement.placements) {
      const rack = p.host.startsWith('a') ? 'r1' : p.host.startsWith('b') ? 'r2' : 'r3';
      perRack[rack] = (perRack[rack] ?? 0) + 1;
    }
    assert.equal(placement.placements.length, 7);
    assert.deepEqual(Object.values(perRack).sort(), [2, 2, 3]);
  });

  it('spread refuses to skew: the replica that would is unplaceable with spread-skew', () => {
    const fleet = fleetOf({
      hosts: [small('a1', 'r1', 16384), small('b1', 'r2', 4096)],
      instances: [
        aGroup({
          replicas: 4,
          resources: { vcpus: 1, memoryMiB: 3000 },
          placement: { spread: 'rack' },
        }),
      ],
    });
    const placement = schedule(fleet);
    assert.equal(placement.placements.length, 3);
    assert.deepEqual(placement.unplaceable[0]?.reasons, {
      'insufficient-memory': 1,
      'spread-skew': 1,
    });
  });
});

describe('schedule: licenses', () => {
  const windows = anImage({
    name: 'win',
    kind: 'vm',
    os: { family: 'windows', release: '2022', arch: 'x86_64' },
    source: { disk: 'w.qcow2' },
    licenses: ['dc'],
  });
  const datacenter = {
    name: 'dc',
    metric: 'host-core' as const,
    entitlement: 32,
    minimumPerHost: 16,
    minimumPerProcessor: 8,
  };
  const hosts = [
    aHost({ name: 'big', labels: { rack: 'r1' }, cpu: { sockets: 2, coresPerSocket: 16 } }),
    aHost({ name: 'small-1', labels: { rack: 'r1' }, cpu: { sockets: 2, coresPerSocket: 8 } }),
    aHost({
      name: 'small-2',
      labels: { rack: 'r2' },
      cpu: { sockets: 2, coresPerSocket: 8 },
      licenses: ['dc'],
    }),
  ];

  /** Windows VMs of group web; with `oneEach`, one per host (the group avoids itself). */
  const windowsFleet = (replicas: number, oneEach: boolean) =>
    fleetOf({
      hosts,
      images: [windows],
      licenses: [datacenter],
      instances: [
        aGroup({
          image: 'win',
          replicas,
          resources: { vcpus: 2, memoryMiB: 4096 },
          placement: { avoid: oneEach ? ['web'] : [] },
        }),
      ],
    });

  it('a Windows VM goes where Datacenter is already licensed: no new units', () => {
    const fleet = windowsFleet(3, false);
    const placement = schedule(fleet);
    assert.deepEqual(new Set(placement.placements.map((p) => p.host)), new Set(['small-2']));
    assert.equal(placement.licenses[0]?.used, 16);
  });

  it('a new host is licensed where it costs least (16 cores, not 32), within the entitlement', () => {
    const fleet = windowsFleet(2, true);
    const placement = schedule(fleet);
    assert.deepEqual(placement.placements.map((p) => p.host).sort(), ['small-1', 'small-2']);
    assert.equal(placement.licenses[0]?.used, 32);
  });

  it('an instance that would exceed the entitlement is unplaceable with license-exhausted:<pool>', () => {
    const fleet = windowsFleet(3, true);
    const placement = schedule(fleet);
    assert.equal(placement.placements.length, 2);
    assert.deepEqual(placement.unplaceable[0]?.reasons, {
      'anti-affinity': 2,
      'license-exhausted:dc': 1,
    });
    assert.ok((placement.licenses[0]?.used ?? 0) <= 32);
  });

  it('a licensed host keeps room for the vCPUs it would otherwise strand', () => {
    // Two hosts licensed for Datacenter, 8 vCPUs / 16 GiB each; 4 Windows VMs heavy in memory
    // and 12 light containers. Best fit alone stacks the VMs on one licensed host, fills its
    // memory and strands 4 vCPUs (4 containers left over); a VM goes to the other licensed host
    // instead once the first could no longer fill its vCPUs with what is left to place.
    const licensedHost = (name: string) =>
      small(name, 'r1', 16384, { licenses: ['dc'] } as Partial<ReturnType<typeof aHost>>);
    const fleet = fleetOf({
      hosts: [licensedHost('a'), licensedHost('b')],
      images: [anImage(), windows],
      licenses: [datacenter],
      instances: [
        aGroup({
          name: 'win',
          image: 'win',
          replicas: 4,
          resources: { vcpus: 1, memoryMiB: 3900 },
        }),
        aGroup({ name: 'web', replicas: 12, resources: { vcpus: 1, memoryMiB: 512 } }),
      ],
    });
    const placement = schedule(fleet);
    assert.deepEqual(placement.unplaceable, []);
    assert.equal(placement.licenses[0]?.used, 32);
    const winHosts = placement.placements.filter((p) => p.group === 'win').map((p) => p.host);
    assert.deepEqual(new Set(winHosts), new Set(['a', 'b']));
    assert.deepEqual(checkInvariants(fleet, placement), []);
  });

  it('per-instance and per-vCPU pools count every instance', () => {
    const fleet = fleetOf({
      hosts,
      images: [anImage({ licenses: ['agent', 'sql'] })],
      licenses: [
        { name: 'agent', metric: 'instance', entitlement: 100 },
        { name: 'sql', metric: 'instance-vcpu', entitlement: 100, minimumPerInstance: 4 },
      ],
      instances: [aGroup({ replicas: 3, resources: { vcpus: 2, memoryMiB: 1024 } })],
    });
    assert.deepEqual(
      schedule(fleet).licenses.map((l) => l.used),
      [3, 12],
    );
  });
});

describe('schedule: failover', () => {
  const racks = ['r1', 'r2', 'r3'].flatMap((rack) =>
    [1, 2].map((i) => small(`${rack}-h${i}`, rack, 16384)),
  );

  it('every protected instance gets a failover host in another rack, and the reserve holds it', () => {
    const fleet = fleetOf({
      failover: { tolerate: 1, domain: 'rack' },
      hosts: racks,
      instances: [
        aGroup({
          replicas: 6,
          failover: true,
          resources: { vcpus: 1, memoryMiB: 4096 },
          placement: { spread: 'rack' },
        }),
      ],
    });
    const placement = schedule(fleet);
    assert.equal(placement.unplaceable.length, 0);
    assert.deepEqual(placement.failover, { tolerate: 1, domain: 'rack', protected: 6, covered: 6 });
    assert.deepEqual(checkInvariants(fleet, placement), []);
    const reserved = placement.hosts.reduce((n, h) => n + h.reserved.memoryMiB, 0);
    assert.ok(reserved >= 2 * 4096, 'at least one rack worth of protected load is reserved');
  });

  it('an instance whose failover cannot be guaranteed is unplaceable with failover-capacity', () => {
    const fleet = fleetOf({
      failover: { tolerate: 1, domain: 'rack' },
      hosts: [small('a', 'r1', 8192), small('b', 'r2', 8192)],
      instances: [
        aGroup({ replicas: 3, failover: true, resources: { vcpus: 1, memoryMiB: 3000 } }),
      ],
    });
    const placement = schedule(fleet);
    assert.equal(placement.placements.length, 2);
    assert.equal(placement.failover.covered, 2);
    assert.ok(
      Object.keys(placement.unplaceable[0]?.reasons ?? {}).some(
        (r) => r === 'failover-capacity' || r.startsWith('insufficient'),
      ),
    );
    assert.deepEqual(checkInvariants(fleet, placement), []);
  });

  it('unprotected instances cannot use the standby reserve', () => {
    const fleet = fleetOf({
      failover: { tolerate: 1, domain: 'host' },
      hosts: [small('a', 'r1', 8192), small('b', 'r1', 8192)],
      instances: [
        aGroup({
          name: 'db',
          replicas: 1,
          failover: true,
          resources: { vcpus: 1, memoryMiB: 6000 },
        }),
        aGroup({ name: 'web', replicas: 1, resources: { vcpus: 1, memoryMiB: 4000 } }),
      ],
    });
    const placement = schedule(fleet);
    assert.equal(hostOf(placement, 'db-0') !== undefined, true);
    assert.equal(placement.unplaceable.map((u) => u.instance).join(), 'web-0');
    assert.deepEqual(checkInvariants(fleet, placement), []);
  });

  it('tolerate 2 is refused with a clear error', () => {
    const fleet = {
      ...fleetOf({ hosts: racks }),
      failover: { tolerate: 2, domain: 'rack', failback: 'manual' as const },
    };
    assert.throws(
      () => schedule(fleet),
      (e) => isVfleetError(e) && e.code === 'unsupported-tolerance',
    );
  });
});

describe('schedule: stability, determinism, explanation', () => {
  const hosts = [small('a', 'r1'), small('b', 'r1'), small('c', 'r2')];
  const group = aGroup({ replicas: 4, resources: { vcpus: 1, memoryMiB: 2048 } });

  it('an observed instance that still fits stays where it is', () => {
    const fleet = fleetOf({ hosts, instances: [group] });
    const observed = {
      instances: [
        { instance: 'web-0', host: 'c' },
        { instance: 'web-3', host: 'b' },
        { instance: 'gone-0', host: 'a' },
      ],
    };
    const placement = schedule(fleet, observed);
    assert.equal(hostOf(placement, 'web-0'), 'c');
    assert.equal(hostOf(placement, 'web-3'), 'b');
  });

  it('a spread group half created keeps every replica it has, even with a rack still empty', () => {
    const racks = [small('a', 'r1'), small('b', 'r2'), small('c', 'r3')];
    const spread = aGroup({
      replicas: 6,
      resources: { vcpus: 1, memoryMiB: 1024 },
      placement: { spread: 'rack' },
    });
    const fleet = fleetOf({ hosts: racks, instances: [spread] });
    // web-0..3 were created on r1 and r2 before the apply died; r3 has none yet.
    const observed = {
      instances: [
        { instance: 'web-0', host: 'a' },
        { instance: 'web-1', host: 'b' },
        { instance: 'web-2', host: 'a' },
        { instance: 'web-3', host: 'b' },
      ],
    };
    const placement = schedule(fleet, observed);
    for (const o of observed.instances) assert.equal(hostOf(placement, o.instance), o.host);
    assert.equal(hostOf(placement, 'web-4'), 'c');
    assert.equal(hostOf(placement, 'web-5'), 'c');
  });

  it('a rack added under a spread group draws only what balance needs', () => {
    const two = [small('a', 'r1'), small('b', 'r2')];
    const spread = aGroup({
      replicas: 6,
      resources: { vcpus: 1, memoryMiB: 1024 },
      placement: { spread: 'rack' },
    });
    const before = schedule(fleetOf({ hosts: two, instances: [spread] }));
    const after = schedule(fleetOf({ hosts: [...two, small('c', 'r3')], instances: [spread] }), {
      instances: before.placements,
    });
    const moved = before.placements.filter((p) => hostOf(after, p.instance) !== p.host);
    assert.equal(moved.length, 2);
    assert.deepEqual(
      ['a', 'b', 'c'].map((h) => after.placements.filter((p) => p.host === h).length),
      [2, 2, 2],
    );
  });

  it('a small spec change moves nothing that still fits', () => {
    const before = schedule(fleetOf({ hosts, instances: [group] }));
    const after = schedule(fleetOf({ hosts, instances: [{ ...group, replicas: 6 }] }), {
      instances: before.placements,
    });
    for (const p of before.placements) assert.equal(hostOf(after, p.instance), p.host);
  });

  it('the same input gives byte-identical output', () => {
    const fleet = rootFleet();
    assert.equal(JSON.stringify(schedule(fleet)), JSON.stringify(schedule(fleet)));
  });

  it('explain lists every host with its verdict, and marks the chosen one', () => {
    const fleet = fleetOf({ hosts: [...hosts, small('tiny', 'r2', 1024)], instances: [group] });
    const { explanation, placement } = explain(fleet, 'web-2');
    assert.ok(explanation);
    assert.equal(explanation.hosts.length, 4);
    assert.equal(explanation.hosts.find((h) => h.host === 'tiny')?.reason, 'insufficient-memory');
    const chosen = explanation.hosts.filter((h) => h.chosen);
    assert.equal(chosen.length, 1);
    assert.equal(chosen[0]?.host, hostOf(placement, 'web-2'));
    assert.equal(explain(fleet, 'nope-0').explanation, undefined);
  });
});

describe('schedule: the root fleet.yaml', () => {
  it('places fully, with failover covered and license use within entitlements', () => {
    const fleet = rootFleet();
    const placement = schedule(fleet);
    assert.deepEqual(placement.unplaceable, []);
    assert.equal(placement.failover.covered, placement.failover.protected);
    assert.ok(placement.failover.protected > 0);
    assert.ok(placement.licenses.every((l) => l.used > 0 && l.used <= l.entitlement));
    assert.deepEqual(checkInvariants(fleet, placement), []);
  });

  // Each example is a small fleet with a point to make; each places whole. The interleaved
  // order once placed the freer `logs` on the ssd hosts that `db` (spread, ssd, one per host)
  // needed, and left two db replicas unplaceable: constrained groups must still come first.
  for (const file of readdirSync(fromRoot('examples')).filter((f) => f.endsWith('.yaml'))) {
    it(`examples/${file} places whole`, () => {
      const loaded = readAndLoadFleet(fromRoot('examples', file));
      assert.ok(loaded.fleet, JSON.stringify(loaded.diagnostics));
      const placement = schedule(loaded.fleet);
      assert.deepEqual(placement.unplaceable, []);
      assert.equal(placement.failover.covered, placement.failover.protected);
      assert.deepEqual(checkInvariants(loaded.fleet, placement), []);
    });
  }
});

// --- properties ------------------------------------------------------------------------------

const arbitraryFleet = fc
  .record({
    racks: fc.integer({ min: 1, max: 4 }),
    hosts: fc.array(
      fc.record({
        sockets: fc.integer({ min: 1, max: 2 }),
        cores: fc.constantFrom(4, 8, 16),
        memory: fc.constantFrom(8192, 16384, 65536),
        disk: fc.constantFrom(100, 1000),
        runs: fc.constantFrom(['vm', 'container'], ['container'], ['vm']),
        overcommit: fc.constantFrom(1, 2, 4),
        licensed: fc.boolean(),
      }),
      { minLength: 1, maxLength: 10 },
    ),
    groups: fc.array(
      fc.record({
        image: fc.constantFrom('deb', 'win', 'rhel'),
        replicas: fc.integer({ min: 0, max: 8 }),
        vcpus: fc.integer({ min: 1, max: 8 }),
        memory: fc.constantFrom(512, 2048, 4096, 8192),
        disk: fc.constantFrom(0, 10, 100),
        spread: fc.boolean(),
        avoidSelf: fc.boolean(),
        avoidPrevious: fc.boolean(),
        failover: fc.boolean(),
        strategy: fc.constantFrom('binpack', 'spread'),
      }),
      { minLength: 1, maxLength: 6 },
    ),
    domain: fc.constantFrom('rack', 'host'),
    tolerate: fc.constantFrom(0, 1),
    entitlement: fc.integer({ min: 0, max: 64 }),
    stacked: fc.boolean(),
  })
  .map(
    (r): FleetDocument => ({
      apiVersion: 'vfleet/v1',
      kind: 'Fleet',
      metadata: { name: 'prop' },
      spec: {
        failover: { tolerate: r.tolerate, domain: r.domain },
        hosts: r.hosts.map((h, i) => ({
          name: `h${i}`,
          labels: { rack: `r${i % r.racks}` },
          cpu: { sockets: h.sockets, coresPerSocket: h.cores, threadsPerCore: 2 },
          memoryMiB: h.memory,
          diskGiB: h.disk,
          os: { family: 'debian', release: '12', arch: 'x86_64' },
          runs: [...h.runs] as Array<'vm' | 'container'>,
          overcommit: { cpu: h.overcommit },
          ...(h.licensed ? { licenses: ['win-dc'] } : {}),
        })) as unknown as FleetDocument['spec']['hosts'],
        images: [
          {
            name: 'deb',
            kind: 'container',
            os: { family: 'debian', release: '12', arch: 'x86_64' },
            licenses: ['agent'],
          },
          {
            name: 'win',
            kind: 'vm',
            os: { family: 'windows', release: '2022', arch: 'x86_64' },
            licenses: ['win-dc'],
          },
          {
            name: 'rhel',
            kind: 'vm',
            os: { family: 'rhel', release: '9.4', arch: 'x86_64' },
            licenses: ['rhel'],
          },
        ],
        licenses: [
          {
            name: 'win-dc',
            metric: 'host-core',
            entitlement: r.entitlement * 4,
            minimumPerHost: 16,
            minimumPerProcessor: 8,
            coverFailover: true,
            ...(r.stacked ? { instancesPerUnit: 2 } : {}),
          },
          {
            name: 'rhel',
            metric: 'host-socket-pair',
            entitlement: r.entitlement,
            coverFailover: true,
          },
          { name: 'agent', metric: 'instance', entitlement: r.entitlement },
        ],
        instances: r.groups.map((g, i) => ({
          name: `g${i}`,
          image: g.image,
          replicas: g.replicas,
          resources: { vcpus: g.vcpus, memoryMiB: g.memory, diskGiB: g.disk },
          placement: {
            strategy: g.strategy as 'binpack' | 'spread',
            ...(g.spread ? { spread: 'rack' } : {}),
            avoid: [
              ...(g.avoidSelf ? [`g${i}`] : []),
              ...(g.avoidPrevious && i > 0 ? [`g${i - 1}`] : []),
            ],
          },
          failover: g.failover,
        })),
      },
    }),
  );

describe('schedule: properties over random fleets', () => {
  it('capacity, anti-affinity, spread, licenses and every single-domain failure hold', () => {
    fc.assert(
      fc.property(arbitraryFleet, (doc) => {
        const fleet = normalizeFleet(doc);
        const placement = schedule(fleet);
        assert.deepEqual(checkInvariants(fleet, placement), []);
        assert.equal(
          placement.placements.length + placement.unplaceable.length,
          fleet.groups.reduce((n, g) => n + g.replicas, 0),
        );
      }),
      { numRuns: 300, seed: 11 },
    );
  });

  it('is deterministic, and keeps observed placements that still fit', () => {
    fc.assert(
      fc.property(arbitraryFleet, (doc) => {
        const fleet = normalizeFleet(doc);
        const first = schedule(fleet);
        assert.equal(JSON.stringify(schedule(fleet)), JSON.stringify(first));
        const again = schedule(fleet, { instances: first.placements });
        for (const p of first.placements) {
          assert.equal(
            again.placements.find((q) => q.instance === p.instance)?.host,
            p.host,
            p.instance,
          );
        }
        assert.deepEqual(checkInvariants(fleet, again), []);
      }),
      { numRuns: 150, seed: 12 },
    );
  });

  it('keeps any part of a placement whole: an apply that stopped halfway resumes without moves', () => {
    fc.assert(
      fc.property(
        arbitraryFleet,
        fc.array(fc.boolean(), { minLength: 64, maxLength: 64 }),
        (doc, mask) => {
          const fleet = normalizeFleet(doc);
          const first = schedule(fleet);
          const part = first.placements.filter((_, i) => mask[i % mask.length]);
          const again = schedule(fleet, { instances: part });
          const moved = part.filter(
            (p) => again.placements.find((q) => q.instance === p.instance)?.host !== p.host,
          );
          assert.deepEqual(
            moved.map((p) => p.instance),
            [],
          );
          assert.deepEqual(checkInvariants(fleet, again), []);
        },
      ),
      { numRuns: 300, seed: 13 },
    );
  });
});
