// The patch and failover audits, and the report envelope, on hand-made inputs whose answers are
// known: every status each audit can give, and findings that are exactly the rows to act on.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AuditInstance, plannedInput } from '../../src/audit/audit-input.js';
import { failoverAudit } from '../../src/audit/failover-audit.js';
import { patchAudit } from '../../src/audit/patch-audit.js';
import { buildReport, exitCodeOf } from '../../src/audit/report.js';
import type { Fleet } from '../../src/model/fleet.js';
import { schedule } from '../../src/scheduler/schedule.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { rootFleet } from '../helpers/root-fleet.js';
import { aFleetDocument, aGroup, aHost, anImage } from '../helpers/spec-builders.js';

const resources = { vcpus: 2, memoryMiB: 1024, diskGiB: 10 };
const at = (
  instance: string,
  host: string,
  failoverHost: string | null,
  group = 'web',
): AuditInstance => ({
  instance,
  group,
  host,
  failoverHost,
  image: 'debian-12',
  resources,
  packages: {},
});

function threeRacks(): Fleet {
  return normalizeFleet(
    aFleetDocument({
      failover: { tolerate: 1, domain: 'rack' },
      hosts: [
        aHost({ name: 'a1', labels: { rack: 'r1' } }),
        aHost({ name: 'b1', labels: { rack: 'r2' } }),
        // Small: room for exactly one 2-vCPU instance (2 threads × overcommit 1).
        aHost({
          name: 'c1',
          labels: { rack: 'r3' },
          cpu: { sockets: 1, coresPerSocket: 1, threadsPerCore: 2 },
          overcommit: { cpu: 1 },
        }),
      ],
      instances: [
        aGroup({ name: 'web', replicas: 6, failover: true }),
        aGroup({ name: 'batch', replicas: 1 }),
      ],
    }),
  );
}

describe('failoverAudit', () => {
  it('checks each scenario from scratch: target missing, unknown, in the same domain, or too small', () => {
    const fleet = threeRacks();
    const audit = failoverAudit({
      fleet,
      source: 'observed',
      instances: [
        at('web-0', 'a1', 'b1'), // fine
        at('web-1', 'a1', null), // no target
        at('web-2', 'a1', 'gone'), // a host that left the fleet
        at('web-3', 'b1', 'b1'), // fails over into its own rack
        at('web-4', 'b1', 'c1'), // c1 holds one 2-vCPU instance…
        at('web-5', 'b1', 'c1'), // …not two: both over capacity when r2 fails
        at('batch-0', 'a1', null, 'batch'), // not protected: not audited
      ],
    });
    assert.deepEqual(
      audit.instances.map((i) => [i.instance, i.status]),
      [
        ['web-0', 'covered'],
        ['web-1', 'no-failover-host'],
        ['web-2', 'unknown-host'],
        ['web-3', 'same-domain'],
        ['web-4', 'over-capacity'],
        ['web-5', 'over-capacity'],
      ],
    );
    assert.equal(audit.protected, 6);
    assert.equal(audit.covered, 1);
    assert.deepEqual(
      audit.scenarios.map((s) => [s.domain, s.protected, s.covered, s.status]),
      [
        ['r1', 3, 1, 'not-covered'],
        ['r2', 3, 0, 'not-covered'],
        ['r3', 0, 0, 'covered'],
      ],
    );
    assert.deepEqual(audit.scenarios[1]?.overloads, [
      { host: 'c1', resource: 'vcpus', needed: 4, free: 2 },
    ]);
    // Reserves: the most one scenario lands on a host (only r1's web-0 lands on b1).
    assert.deepEqual(
      audit.reserves.map((r) => [r.host, r.reserved.vcpus]),
      [
        ['a1', 0],
        ['b1', 2],
        ['c1', 4],
      ],
    );
  });

  it("fleet.yaml as the scheduler places it: every scenario covered, reserves within the hosts' room", () => {
    const fleet = rootFleet();
    const audit = failoverAudit(plannedInput(fleet, schedule(fleet)));
    assert.equal(audit.protected, 15);
    assert.equal(audit.covered, 15);
    assert.ok(audit.scenarios.every((s) => s.status === 'covered'));
    for (const r of audit.reserves) {
      assert.ok(
        r.reserved.vcpus <= r.free.vcpus && r.reserved.memoryMiB <= r.free.memoryMiB,
        r.host,
      );
    }
  });
});

describe('patchAudit', () => {
  it('instances and hosts, compliant / outdated / missing / not applicable, and the per-package summary', () => {
    const doc = aFleetDocument({
      hosts: [
        aHost({
          name: 'hv-01',
          patchBaseline: 'sec',
          packages: { openssl: '3.0.15-1~deb12u1', 'libc6:amd64': '2.36-9+deb12u7' },
        }),
        aHost({ name: 'hv-02' }), // no baseline: counted as not audited
      ],
      images: [
        anImage({ packages: { openssl: '3.0.13-1~deb12u1' } }),
        anImage({
          name: 'win',
          kind: 'vm',
          os: { family: 'windows', release: '2022', arch: 'x86_64' },
          source: { disk: 'w.qcow2' },
          packages: {},
        }),
      ],
      patchBaselines: [
        {
          name: 'sec',
          appliesTo: { family: 'debian', release: '12' },
          minimum: { openssl: '3.0.15-1~deb12u1', libc6: '2.36-9+deb12u7' },
        },
      ],
      instances: [
        aGroup({ name: 'web', replicas: 2, patchBaseline: 'sec' }),
        aGroup({ name: 'dc', image: 'win', replicas: 1, patchBaseline: 'sec' }),
        aGroup({ name: 'free', replicas: 1 }),
      ],
    });
    const fleet = normalizeFleet(doc);
    const audit = patchAudit(plannedInput(fleet, schedule(fleet)));
    assert.deepEqual(
      audit.subjects.map((s) => [s.kind, s.subject, s.status, s.compliant, s.outdated, s.missing]),
      [
        ['host', 'hv-01', 'compliant', 2, 0, 0],
        ['instance', 'dc-0', 'not-applicable', 0, 0, 0],
        ['instance', 'web-0', 'non-compliant', 0, 1, 1],
        ['instance', 'web-1', 'non-compliant', 0, 1, 1],
      ],
    );
    assert.deepEqual(
      audit.packages
        .filter((p) => p.subject === 'web-0')
        .map((p) => [p.package, p.installed, p.status]),
      [
        ['libc6', null, 'missing'],
        ['openssl', '3.0.13-1~deb12u1', 'outdated'],
      ],
    );
    assert.deepEqual(
      audit.byPackage.map((p) => [p.package, p.outdated, p.missing, p.subjects]),
      [
        ['libc6', 0, 2, 3],
        ['openssl', 2, 0, 3],
      ],
    );
    assert.deepEqual(audit.baselines, [
      {
        baseline: 'sec',
        subjects: 4,
        compliant: 1,
        nonCompliant: 2,
        pendingReboot: 0,
        failed: 0,
        notApplicable: 1,
      },
    ]);
    assert.deepEqual(audit.unaudited, { instances: 1, hosts: 1 });
  });
});

describe('buildReport', () => {
  it('fleet.yaml as planned: findings are exactly the rows below the baseline, exit 2 unless not gated', () => {
    const fleet = rootFleet();
    const input = plannedInput(fleet, schedule(fleet));
    const report = buildReport(['licenses', 'patches', 'failover'], input, {
      generatedAt: '2023-11-14T22:13:20.000Z',
      specHash: 'abc',
    });
    assert.deepEqual(Object.keys(report).slice(0, 6), [
      'formatVersion',
      'generatedAt',
      'fleet',
      'specHash',
      'source',
      'kinds',
    ]);
    assert.equal(
      report.findings.length,
      report.patches?.packages.filter((p) => p.status !== 'compliant').length,
    );
    assert.equal(report.findings.length, 12); // web's image: libssl3 and openssl below the baseline, 6 replicas
    assert.deepEqual(report.findings[0], {
      kind: 'patches',
      subject: 'web-0',
      subjectKind: 'instance',
      baseline: 'debian-12-security',
      package: 'libssl3',
      installed: '3.0.13-1~deb12u1',
      required: '3.0.15-1~deb12u1',
      status: 'outdated',
      security: false,
    });
    assert.equal(exitCodeOf(report, ['licenses', 'patches', 'failover']), 2);
    assert.equal(exitCodeOf(report, ['licenses', 'failover']), 0);
    const licenses = buildReport(['licenses'], input, { generatedAt: 'x', specHash: 'y' });
    assert.deepEqual(licenses.kinds, ['licenses']);
    assert.equal(licenses.patches, undefined);
    assert.equal(exitCodeOf(licenses, ['licenses']), 0);
  });

  it('a license shortfall is a finding with pool, needed, entitlement and shortfall', () => {
    const fleet = rootFleet();
    const placement = schedule(fleet);
    const short = {
      ...fleet,
      licenses: fleet.licenses.map((p) =>
        p.name === 'windows-datacenter' ? { ...p, entitlement: 16 } : p,
      ),
    };
    const report = buildReport(['licenses'], plannedInput(short, placement), {
      generatedAt: 'x',
      specHash: 'y',
    });
    assert.deepEqual(report.findings, [
      {
        kind: 'licenses',
        pool: 'windows-datacenter',
        metric: 'host-core',
        needed: 32,
        entitlement: 16,
        shortfall: 16,
      },
    ]);
    assert.equal(exitCodeOf(report, ['licenses']), 2);
  });
});
