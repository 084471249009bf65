// The failover audit's judgement of replicated VMs (docs/replication.md): covered by room and by
// a fresh replica on the failover host; `replica-missing` without one (or with one elsewhere);
// `rpo-exceeded` when it is older than the group's maxRpo — findings in the report, with the
// replica table; a VM without replication keeps the capacity verdict alone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AuditInstance } from '../../src/audit/audit-input.js';
import { buildReport, describeFinding } from '../../src/audit/report.js';
import type { ReplicationStatus } from '../../src/model/replication.js';
import { normalizeFleet } from '../../src/spec/normalize.js';
import { aFleetDocument, aGroup, aHost, anImage } from '../helpers/spec-builders.js';

const fleet = normalizeFleet(
  aFleetDocument({
    failover: { tolerate: 1, replication: { interval: '10s', maxRpo: '60s' } },
    hosts: [aHost({ name: 'a' }), aHost({ name: 'b' }), aHost({ name: 'c' })],
    images: [anImage({ name: 'vm-12', kind: 'vm', source: { disk: 'vm.qcow2' } }), anImage()],
    instances: [
      aGroup({ name: 'db', image: 'vm-12', replicas: 3, failover: true }),
      aGroup({ name: 'web', image: 'debian-12', replicas: 1, failover: true }),
    ],
  }),
);
const vm = (instance: string, group = 'db', image = 'vm-12'): AuditInstance => ({
  instance,
  group,
  host: 'a',
  failoverHost: 'b',
  image,
  resources: { vcpus: 1, memoryMiB: 512, diskGiB: 10 },
  packages: {},
});
const replicated = (instance: string, target: string, consistentAt: number): ReplicationStatus => ({
  instance,
  source: 'a',
  target,
  generation: 1,
  consistentAt,
  seq: 4,
  lastSyncAt: consistentAt,
  lastBytes: 65536,
  lastKind: 'incremental',
  lastDurationMs: 5,
  totalBytes: 1,
  failures: 0,
});

describe('the failover audit on replicated VMs', () => {
  const now = 1_000_000;
  const report = buildReport(
    ['failover'],
    {
      fleet,
      source: 'observed',
      instances: [vm('db-0'), vm('db-1'), vm('db-2'), vm('web-0', 'web', 'debian-12')],
      replication: {
        nowMs: now,
        statuses: new Map([
          ['db-0', replicated('db-0', 'b', now - 12_000)],
          ['db-1', replicated('db-1', 'b', now - 95_000)],
          ['db-2', replicated('db-2', 'c', now - 1_000)],
        ]),
      },
    },
    { generatedAt: '2026-12-05T00:00:00Z', specHash: 'x' },
  );
  const byName = new Map(report.failover?.instances.map((i) => [i.instance, i]));

  it('judges each replica against its failover host and maxRpo', () => {
    assert.equal(byName.get('db-0')?.status, 'covered');
    assert.deepEqual(byName.get('db-0')?.replica, {
      target: 'b',
      consistentAt: now - 12_000,
      rpoSeconds: 12,
      maxRpoSeconds: 60,
    });
    assert.equal(byName.get('db-1')?.status, 'rpo-exceeded');
    assert.equal(byName.get('db-2')?.status, 'replica-missing', 'its replica is on c, not b');
    assert.equal(byName.get('web-0')?.status, 'covered');
    assert.equal(byName.get('web-0')?.replica, undefined, 'sandboxes are not replicated');
  });

  it('reports the two as findings, in words an auditor reads', () => {
    const lines = report.findings.map(describeFinding).sort();
    assert.deepEqual(lines, [
      'instance db-1 on a: its replica on b is 95 s old, over its maxRpo of 60 s',
      'instance db-2 on a: b keeps no complete replica of its disk: a restart there would be without its data',
    ]);
    assert.equal(report.summary.failover?.covered, 2);
  });
});
