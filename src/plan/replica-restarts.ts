// A plan's restarts of replicated VMs (docs/replication.md), decided after the plan is made
// (app/plan.ts): a restart onto the failover host that keeps the VM's replica boots from it
// (`fromReplica`, with the data window lost); without a usable replica the group's
// `onMissingReplica` decides — `image` restarts it from its image (the reason says its data is
// lost), `wait` (the default) holds it back, with every action that waits for it.
import type { Fleet } from '../model/fleet.js';
import type { Plan, PlanAction, WithheldRestart } from '../model/plan.js';
import type { ReplicationStatus } from '../model/replication.js';
import { isRestart, withoutActions } from './restarts.js';

export function withReplicaRestarts(
  plan: Plan,
  fleet: Fleet,
  statuses: ReadonlyMap<string, ReplicationStatus>,
  /** When each host was last seen alive (ms), for the data window a restart loses. */
  lastSeen: (host: string) => number | undefined,
): Plan {
  const groups = new Map(fleet.groups.map((g) => [g.name, g]));
  const withheld: WithheldRestart[] = [];
  const dropped = new Set<string>();
  const actions = plan.actions.map((a): PlanAction => {
    const group = groups.get(a.group);
    if (!isRestart(a) || !group?.replication) return a;
    const from = a.fromHost as string;
    const status = statuses.get(a.instance);
    const usable = status !== undefined && status.consistentAt !== null && status.target === a.host;
    if (usable) {
      const consistentAt = status.consistentAt as number;
      const seen = lastSeen(from) ?? consistentAt;
      return {
        ...a,
        fromReplica: { consistentAt, seq: status.seq, rpoMs: Math.max(0, seen - consistentAt) },
        reason: `${a.reason}; from its replica as of ${new Date(consistentAt).toISOString()}`,
      };
    }
    const why =
      status === undefined || status.consistentAt === null
        ? `no replica of ${a.instance} exists yet`
        : `its replica is on ${status.target}, not ${a.host}`;
    if (group.onMissingReplica === 'image') {
      return { ...a, reason: `${a.reason}; from its image: ${why} (its data is lost)` };
    }
    dropped.add(a.id);
    withheld.push({
      instance: a.instance,
      host: a.host,
      fromHost: from,
      reason: `${why} (onMissingReplica: wait): it stays down until ${from} returns, or the group allows onMissingReplica: image`,
    });
    return a;
  });
  const narrowed = withoutActions({ ...plan, actions }, [...dropped]).plan;
  return withheld.length === 0 ? narrowed : { ...narrowed, withheld };
}
