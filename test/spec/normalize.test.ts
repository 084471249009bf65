import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { instancesOf, replicaName, replicaOf } from '../../src/model/fleet.js';
import { closest } from '../../src/spec/did-you-mean.js';
import { loadFleet } from '../../src/spec/load-fleet.js';
import { aFleetDocument, aGroup, aHost, anImage, toYaml } from '../helpers/spec-builders.js';

function fleetOf(doc: ReturnType<typeof aFleetDocument>) {
  const loaded = loadFleet(toYaml(doc), 'fleet.yaml');
  assert.deepEqual(loaded.diagnostics, []);
  assert.ok(loaded.fleet);
  return loaded.fleet;
}

describe('normalize', () => {
  it('applies the defaults a host leaves out', () => {
    const host = aHost({ cpu: { sockets: 1, coresPerSocket: 4 } });
    const fleet = fleetOf(aFleetDocument({ hosts: [host] }));
    const h = fleet.hosts[0];
    assert.equal(h?.engine, 'embedded');
    assert.equal(h?.cpu.threadsPerCore, 1);
    assert.deepEqual(h?.overcommit, { cpu: 1, memory: 1 });
    assert.equal(h?.dataDir, '/var/lib/vfleet');
    assert.equal(h?.ssh, undefined);
  });

  it('gives ssh hosts their endpoint with port and user defaults', () => {
    const host = aHost({
      engine: 'ssh',
      address: '127.0.0.2',
      hostKey: 'SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU',
    });
    const fleet = fleetOf(aFleetDocument({ hosts: [host] }));
    assert.deepEqual(fleet.hosts[0]?.ssh, {
      address: '127.0.0.2',
      port: 22,
      user: 'root',
      hostKey: 'SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU',
    });
  });

  it("merges a group's license pools with its image's, without repeats", () => {
    const fleet = fleetOf(
      aFleetDocument({
        licenses: [
          { name: 'a', metric: 'instance', entitlement: 1 },
          { name: 'b', metric: 'instance', entitlement: 1 },
        ],
        images: [anImage({ licenses: ['a', 'b'] })],
        instances: [aGroup({ licenses: ['b'] })],
      }),
    );
    assert.deepEqual(fleet.groups[0]?.licenses, ['b', 'a']);
  });

  it('no failover section means no standby; a section without tolerate means 1', () => {
    assert.deepEqual(fleetOf(aFleetDocument()).failover, {
      tolerate: 0,
      domain: 'host',
      failback: 'manual',
    });
    assert.deepEqual(fleetOf(aFleetDocument({ failover: { domain: 'rack' } })).failover, {
      tolerate: 1,
      domain: 'rack',
      failback: 'manual',
    });
  });

  it('names replicas <group>-<index>, even a single one', () => {
    const fleet = fleetOf(
      aFleetDocument({
        instances: [aGroup({ replicas: 3 }), aGroup({ name: 'db', replicas: undefined })],
      }),
    );
    assert.deepEqual(
      [...instancesOf(fleet)].map((i) => i.name),
      ['web-0', 'web-1', 'web-2', 'db-0'],
    );
  });
});

describe('replica names', () => {
  it('replicaOf undoes replicaName, and only replicaName', () => {
    for (const [group, index] of [
      ['web', 0],
      ['web', 7],
      ['web-1', 12],
      ['a-b-c', 100_000],
    ] as const) {
      assert.deepEqual(replicaOf(replicaName(group, index)), { group, index });
    }
    for (const name of [
      'web',
      'web-',
      'web-01',
      'web-00',
      'web-1a',
      'web--1',
      'web-+1',
      'web-1.5',
    ]) {
      const r = replicaOf(name);
      assert.ok(r === undefined || replicaName(r.group, r.index) === name, name);
    }
    assert.equal(replicaOf('web-01'), undefined);
    assert.equal(replicaOf('web-'), undefined);
    assert.deepEqual(replicaOf('web--1'), { group: 'web-', index: 1 });
  });
});

describe('did you mean', () => {
  const cases: Array<[string, string[], string | undefined]> = [
    ['debain', ['debian', 'ubuntu'], 'debian'],
    ['engin', ['engine', 'labels'], 'engine'],
    ['Debian', ['debian'], 'debian'],
    ['web', ['db', 'api'], undefined],
    ['x', ['y'], 'y'],
    ['completely-different', ['engine'], undefined],
  ];
  for (const [wrong, candidates, expected] of cases) {
    it(`${wrong} → ${expected}`, () => assert.equal(closest(wrong, candidates), expected));
  }
});
