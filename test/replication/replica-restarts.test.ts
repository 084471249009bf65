// A plan's restarts of replicated VMs (plan/replica-restarts.ts): from the replica when the
// failover host keeps one (with the data window lost), from the image only when the group
// allows it, else held back with what waits for it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Fleet, InstanceGroup } from '../../src/model/fleet.js';
import type { Plan, PlanAction } from '../../src/model/plan.js';
import type { ReplicationStatus } from '../../src/model/replication.js';
import { withReplicaRestarts } from '../../src/plan/replica-restarts.js';

const policy = { intervalMs: 60_000, maxRpoMs: 300_000 };

function group(name: string, extra: Partial<InstanceGroup> = {}): InstanceGroup {
  return { name, replication: policy, ...extra } as InstanceGroup;
}

function restart(instance: string, group: string, dependsOn: string[] = []): PlanAction {
  return {
    id: `${instance}.create`,
    kind: 'create',
    instance,
    group,
    host: 'hv-2',
    fromHost: 'hv-1',
    generation: 2,
    image: 'vm-12',
    resources: { vcpus: 1, memoryMiB: 512, diskGiB: 10 },
    failoverHost: null,
    dependsOn,
    reason: 'restart: hv-1 is down',
  };
}

function planOf(actions: PlanAction[]): Plan {
  return {
    actions,
    summary: { create: actions.length, move: 0, update: 0, patch: 0, destroy: 0 },
  } as unknown as Plan;
}

function status(instance: string, target: string, consistentAt: number | null): ReplicationStatus {
  return {
    instance,
    source: 'hv-1',
    target,
    generation: 1,
    consistentAt,
    seq: 3,
    lastSyncAt: 0,
    lastBytes: 0,
    lastKind: 'incremental',
    lastDurationMs: 0,
    totalBytes: 0,
    failures: 0,
  };
}

describe('restarts of replicated VMs', () => {
  const fleet = {
    groups: [
      group('db'),
      group('cache', { onMissingReplica: 'image' }),
      group('plain', { replication: undefined }),
    ],
  } as unknown as Fleet;

  it('boots from the replica on the failover host, with the data window up to when the host was last seen', () => {
    const plan = withReplicaRestarts(
      planOf([restart('db-0', 'db')]),
      fleet,
      new Map([['db-0', status('db-0', 'hv-2', 1_000_000)]]),
      (host) => (host === 'hv-1' ? 1_042_000 : undefined),
    );
    assert.deepEqual(plan.actions[0]?.fromReplica, {
      consistentAt: 1_000_000,
      seq: 3,
      rpoMs: 42_000,
    });
    assert.match(plan.actions[0]?.reason ?? '', /from its replica as of 1970-01-01T00:16:40.000Z/);
    assert.equal(plan.withheld, undefined);
  });

  it('holds back a VM without a usable replica (onMissingReplica: wait) and what waits for it', () => {
    const patch = {
      ...restart('db-1', 'db'),
      id: 'db-1.patch',
      kind: 'patch' as const,
      fromHost: null,
      dependsOn: ['db-1.create'],
    };
    const plan = withReplicaRestarts(
      planOf([restart('db-1', 'db'), patch, restart('plain-0', 'plain')]),
      fleet,
      new Map([['db-1', status('db-1', 'hv-3', 1_000)]]),
      () => undefined,
    );
    assert.deepEqual(
      plan.actions.map((a) => a.id),
      ['plain-0.create'],
    );
    assert.equal(plan.summary.create, 1);
    assert.equal(plan.withheld?.length, 1);
    assert.match(
      plan.withheld?.[0]?.reason ?? '',
      /its replica is on hv-3, not hv-2 \(onMissingReplica: wait\)/,
    );
  });

  it('restarts from the image where the group allows it, and says the data is lost', () => {
    const plan = withReplicaRestarts(
      planOf([restart('cache-0', 'cache')]),
      fleet,
      new Map(),
      () => undefined,
    );
    assert.equal(plan.actions.length, 1);
    assert.equal(plan.actions[0]?.fromReplica, undefined);
    assert.match(
      plan.actions[0]?.reason ?? '',
      /from its image: no replica of cache-0 exists yet \(its data is lost\)/,
    );
  });
});
