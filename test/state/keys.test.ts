// The key layout: one hash tag per fleet (so a fleet is one Redis Cluster slot), and no fleet's
// keys inside another's namespace.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { engineHostKeys, fleetKeys, queuePrefix } from '../../src/state/keys.js';

/** The part of a key Redis Cluster hashes: the first {…} with something inside, else the key. */
function hashTag(key: string): string {
  const open = key.indexOf('{');
  if (open < 0) return key;
  const close = key.indexOf('}', open + 1);
  return close <= open + 1 ? key : key.slice(open + 1, close);
}

function allKeys(fleet: string): string[] {
  const { prefix, ...keys } = fleetKeys(fleet);
  return [
    ...Object.values(keys),
    `${queuePrefix(fleet)}:host.hv-01:wait`,
    ...Object.values(engineHostKeys(fleet, 'hv-01')),
  ];
}

describe('state keys', () => {
  it('puts every key of a fleet under vfleet:{<fleet>}: so they share one cluster slot', () => {
    const keys = allKeys('lab');
    assert.deepEqual([...new Set(keys)].length, keys.length, 'no two kinds of record share a key');
    for (const key of keys) {
      assert.ok(key.startsWith('vfleet:{lab}:'), key);
      assert.equal(hashTag(key), 'lab', key);
    }
  });

  it('names the documented keys', () => {
    assert.deepEqual(fleetKeys('lab'), {
      prefix: 'vfleet:{lab}:',
      hosts: 'vfleet:{lab}:hosts',
      heartbeats: 'vfleet:{lab}:heartbeats',
      instances: 'vfleet:{lab}:instances',
      packages: 'vfleet:{lab}:packages',
      profiles: 'vfleet:{lab}:profiles',
      version: 'vfleet:{lab}:version',
      lock: 'vfleet:{lab}:lock',
      currentPlan: 'vfleet:{lab}:current-plan',
      events: 'vfleet:{lab}:events',
      leases: 'vfleet:{lab}:leases',
      leader: 'vfleet:{lab}:leader',
      leaderToken: 'vfleet:{lab}:leader-token',
      fenced: 'vfleet:{lab}:fenced',
      health: 'vfleet:{lab}:health',
      revision: 'vfleet:{lab}:revision',
      sync: 'vfleet:{lab}:sync',
      suspended: 'vfleet:{lab}:suspended',
      reconcileRequest: 'vfleet:{lab}:reconcile-request',
      replication: 'vfleet:{lab}:replication',
      replicationLock: 'vfleet:{lab}:replication-lock:',
      drained: 'vfleet:{lab}:drained',
      patches: 'vfleet:{lab}:patches',
    });
    assert.equal(queuePrefix('lab'), 'vfleet:{lab}:bull');
    assert.deepEqual(engineHostKeys('lab', 'hv-01'), {
      instances: 'vfleet:{lab}:engine:hv-01:instances',
      fence: 'vfleet:{lab}:engine:hv-01:fence',
      disks: 'vfleet:{lab}:engine:hv-01:disks',
      replicas: 'vfleet:{lab}:engine:hv-01:replicas',
      down: 'vfleet:{lab}:engine:hv-01:down',
      agent: 'vfleet:{lab}:engine:hv-01:agent',
      stopped: 'vfleet:{lab}:engine:hv-01:stopped',
      patchFaults: 'vfleet:{lab}:engine:hv-01:patch-faults',
      hostPatch: 'vfleet:{lab}:engine:hv-01:host-patch',
    });
  });

  it("keeps fleets apart: no key of one fleet starts with another's prefix", () => {
    const fleets = ['we', 'web', 'web-1', 'a', 'ab'];
    for (const fleet of fleets) {
      for (const other of fleets.filter((f) => f !== fleet)) {
        for (const key of allKeys(fleet)) {
          assert.ok(!key.startsWith(fleetKeys(other).prefix), `${key} vs ${other}`);
        }
      }
    }
  });

  it('refuses names that could move the hash tag or blur the layout', () => {
    for (const bad of ['', 'a}b', '{x}', 'a:b', 'A', '-a', 'a'.repeat(64)]) {
      assert.throws(() => fleetKeys(bad), TypeError, JSON.stringify(bad));
    }
    assert.throws(() => engineHostKeys('lab', 'hv:01'), TypeError);
  });
});
