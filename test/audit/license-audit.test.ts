import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { plannedInput } from '../../src/audit/audit-input.js';
import { licenseAudit } from '../../src/audit/license-audit.js';
import type { FleetDocument } from '../../src/model/fleet-spec.generated.js';
import type { Placement } from '../../src/model/placement.js';
import { schedule } from '../../src/scheduler/schedule.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { rootFleet } from '../helpers/root-fleet.js';
import { aFleetDocument, aGroup, aHost, anImage } from '../helpers/spec-builders.js';

describe('licenseAudit', () => {
  it('fleet.yaml as planned: every pool compliant, the counted hosts and why they count', () => {
    const fleet = rootFleet();
    const placement = schedule(fleet);
    const audit = licenseAudit(plannedInput(fleet, placement));
    assert.deepEqual(
      audit.pools.map((p) => [p.pool, p.used, p.needed, p.entitlement, p.status]),
      placement.licenses.map((l) => [l.pool, l.used, l.used, l.entitlement, 'compliant']),
    );
    const windows = audit.hosts.filter((h) => h.pool === 'windows-datacenter');
    assert.ok(windows.every((h) => h.units === 16 && h.cores === 16));
    assert.deepEqual(windows.flatMap((h) => h.runs).sort(), ['dc-0', 'dc-1', 'reports-0']);
    assert.equal(audit.instances.filter((i) => i.pools.includes('windows-datacenter')).length, 3);
  });

  it('counts failover targets of coverFailover pools: needed exceeds used, and the shortfall shows', () => {
    const doc: FleetDocument = aFleetDocument({
      failover: { tolerate: 1, domain: 'rack' },
      hosts: [
        aHost({ name: 'a', labels: { rack: 'r1' }, licenses: ['dc'] }),
        aHost({ name: 'b', labels: { rack: 'r2' } }),
      ],
      images: [
        anImage({
          name: 'win',
          kind: 'vm',
          os: { family: 'windows', release: '2022', arch: 'x86_64' },
          source: { disk: 'w.qcow2' },
          packages: {},
          licenses: ['dc'],
        }),
      ],
      licenses: [
        {
          name: 'dc',
          metric: 'host-core',
          entitlement: 16,
          minimumPerHost: 16,
          minimumPerProcessor: 8,
          coverFailover: true,
        },
      ],
      patchBaselines: [],
      instances: [aGroup({ name: 'w', image: 'win', replicas: 1, failover: true })],
    });
    const fleet = normalizeFleet(doc);
    // As an auditor would find it: the VM on a, its failover host b not licensed for it.
    const placement: Placement = {
      ...schedule({ ...fleet, failover: { tolerate: 0, domain: 'rack', failback: 'manual' } }),
      placements: [{ instance: 'w-0', group: 'w', host: 'a', failoverHost: 'b' }],
    };
    const audit = licenseAudit(plannedInput(fleet, placement));
    assert.deepEqual(audit.pools[0], {
      pool: 'dc',
      product: null,
      metric: 'host-core',
      entitlement: 16,
      used: 16,
      needed: 32,
      available: 0,
      shortfall: 16,
      status: 'shortfall',
    });
    assert.deepEqual(
      audit.hosts.map((h) => [h.host, h.units, h.assigned, h.runs, h.failoverFor]),
      [
        ['a', 16, true, ['w-0'], []],
        ['b', 16, false, [], ['w-0']],
      ],
    );
  });
});
