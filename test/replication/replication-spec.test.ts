// `failover.replication` and `onMissingReplica` in the spec: what normalize makes of them, and
// the diagnostics at the field for what cannot work.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadFleet } from '../../src/spec/load-fleet.js';
import { aFleetDocument, aGroup, anImage, toYaml } from '../helpers/spec-builders.js';

const vmImage = anImage({ name: 'vm-12', kind: 'vm', source: { disk: 'images/vm.qcow2' } });

function load(spec: Parameters<typeof aFleetDocument>[0]) {
  return loadFleet(toYaml(aFleetDocument(spec)), 'fleet.yaml');
}

describe('failover.replication in the spec', () => {
  it('applies the fleet policy to protected VM groups only, with a group override and opt-out', () => {
    const loaded = load({
      failover: { tolerate: 1, replication: { interval: '30s' } },
      images: [anImage(), vmImage],
      instances: [
        aGroup({ name: 'db', image: 'vm-12', failover: true }),
        aGroup({
          name: 'cache',
          image: 'vm-12',
          failover: { replication: { interval: '5s', maxRpo: '20s' }, onMissingReplica: 'image' },
        }),
        aGroup({ name: 'scratch', image: 'vm-12', failover: { replication: false } }),
        aGroup({ name: 'loose', image: 'vm-12' }),
        aGroup({ name: 'web', image: 'debian-12', failover: true }),
      ],
    });
    assert.deepEqual(
      loaded.diagnostics.filter((d) => d.severity === 'error'),
      [],
    );
    const groups = new Map(loaded.fleet?.groups.map((g) => [g.name, g]));
    assert.deepEqual(loaded.fleet?.failover.replication, { intervalMs: 30_000, maxRpoMs: 300_000 });
    assert.deepEqual(groups.get('db')?.replication, { intervalMs: 30_000, maxRpoMs: 300_000 });
    assert.equal(groups.get('db')?.onMissingReplica, undefined); // wait, by default
    assert.deepEqual(groups.get('cache')?.replication, { intervalMs: 5_000, maxRpoMs: 20_000 });
    assert.equal(groups.get('cache')?.onMissingReplica, 'image');
    assert.equal(groups.get('scratch')?.replication, undefined);
    assert.equal(
      groups.get('loose')?.replication,
      undefined,
      'unprotected: nothing to fail over to',
    );
    assert.equal(groups.get('web')?.replication, undefined, 'sandboxes restart from their image');
  });

  it('refuses a maxRpo shorter than the interval, at the field', () => {
    const text = toYaml(
      aFleetDocument({ failover: { tolerate: 1, replication: { interval: '2m', maxRpo: '30s' } } }),
    );
    const loaded = loadFleet(text, 'fleet.yaml');
    const error = loaded.diagnostics.find((d) => d.code === 'replication-policy');
    assert.ok(error, JSON.stringify(loaded.diagnostics));
    assert.equal(error.severity, 'error');
    assert.match(error.message, /maxRpo 30s is shorter than the interval 2m/);
    const line = text.split('\n').findIndex((l) => l.includes('maxRpo')) + 1;
    assert.equal(error.line, line);
  });

  it('refuses an interval under a second and a malformed duration', () => {
    const short = load({ failover: { tolerate: 1, replication: { interval: '500ms' } } });
    assert.ok(short.diagnostics.some((d) => /shorter than a second/.test(d.message)));
    const bad = load({ failover: { tolerate: 1, replication: { interval: '1 minute' } } });
    assert.ok(
      bad.diagnostics.some((d) => d.severity === 'error' && /interval/.test(d.path)),
      JSON.stringify(bad.diagnostics),
    );
  });

  it('warns that a sandbox group asking for replication gets none', () => {
    const loaded = load({
      failover: { tolerate: 1 },
      instances: [aGroup({ failover: { replication: { interval: '10s' } } })],
    });
    const warning = loaded.diagnostics.find((d) => d.code === 'replication-policy');
    assert.equal(warning?.severity, 'warning');
    assert.match(warning?.message ?? '', /sandboxes, whose disks are not replicated/);
  });
});
