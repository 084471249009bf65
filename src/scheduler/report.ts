// Stage 4 of the stack (stack.ts), report — and `explain`, which reports every host's verdict
// for one instance at its turn.
import type { Host } from '../model/fleet.js';
import { replicaName } from '../model/fleet.js';
import {
  type Explanation,
  type HostVerdict,
  PLACEMENT_FORMAT_VERSION,
  type Placement,
  type PlacementEntry,
  type PlacementReason,
  type Unplaceable,
} from '../model/placement.js';
import type { GroupPlan } from './group-plan.js';
import type { PlacementState } from './placement-state.js';
import { reasonFor } from './stack.js';

/** Per reason, how many hosts it rules out for p (hosts that pass every check: `not-chosen`). */
export function reasonsAcrossHosts(s: PlacementState, p: GroupPlan): Unplaceable['reasons'] {
  const counts: Partial<Record<PlacementReason, number>> = {};
  for (let h = 0; h < s.H; h++) {
    const reason = reasonFor(s, p, h) ?? 'not-chosen';
    counts[reason] = (counts[reason] ?? 0) + 1;
  }
  if (s.H === 0) counts['no-hosts'] = 1;
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Every host's verdict for the instance `name` of p, now. */
export function evaluateAll(
  s: PlacementState,
  p: GroupPlan,
  name: string,
  kept: boolean,
  preferred = -1,
): Explanation {
  const hosts: HostVerdict[] = [];
  for (let h = 0; h < s.H; h++) {
    const reason = reasonFor(s, p, h, preferred);
    hosts.push({
      host: (s.hosts[h] as Host).name,
      ok: reason === null,
      reason,
      freeAfter: reason === null ? Math.round(s.keyAfter(p, h)) : null,
      licenseUnits: reason === null ? s.licensing.licenseUnits(p, h) : null,
      chosen: false,
    });
  }
  return {
    instance: name,
    group: p.group.name,
    strategy: p.group.placement.strategy,
    kept,
    hosts,
  };
}

export function markChosen(explanation: Explanation, h: number): Explanation {
  const hosts = explanation.hosts.map((v, i) => (i === h ? { ...v, chosen: true } : v));
  return { ...explanation, hosts };
}

export function report(s: PlacementState, unplaceable: Unplaceable[]): Placement {
  const placements: PlacementEntry[] = [];
  let protectedCount = 0;
  let covered = 0;
  for (const p of s.plans) {
    for (let i = 0; i < p.group.replicas; i++) {
      if (p.isProtected) protectedCount++;
      const h = p.hostOf[i] as number;
      if (h < 0) continue;
      const t = p.targetOf[i] as number;
      if (t >= 0) covered++;
      placements.push({
        instance: p.observedNames?.[i] ?? replicaName(p.group.name, i),
        group: p.group.name,
        host: (s.hosts[h] as Host).name,
        failoverHost: t >= 0 ? (s.hosts[t] as Host).name : null,
      });
    }
  }
  const groupOrder = new Map(s.plans.map((p) => [p.group.name, p.g]));
  unplaceable.sort(
    (a, b) =>
      (groupOrder.get(a.group) as number) - (groupOrder.get(b.group) as number) ||
      indexOf(a.instance) - indexOf(b.instance),
  );
  return {
    formatVersion: PLACEMENT_FORMAT_VERSION,
    placements,
    hosts: s.hosts.map((host, h) => ({
      name: host.name,
      used: {
        vcpus: s.usedCpu[h]! / 1000,
        memoryMiB: s.usedMem[h]!,
        diskGiB: s.usedDisk[h]!,
      },
      reserved: {
        vcpus: s.resCpu[h]! / 1000,
        memoryMiB: s.resMem[h]!,
        diskGiB: s.resDisk[h]!,
      },
      licenses: s.ledger.poolsCounting(h),
    })),
    licenses: s.fleet.licenses.map((pool, i) => ({
      pool: pool.name,
      metric: pool.metric,
      entitlement: pool.entitlement,
      used: s.ledger.used(i),
    })),
    unplaceable,
    failover: {
      tolerate: s.tolerate,
      domain: s.fleet.failover.domain,
      protected: protectedCount,
      covered,
    },
  };
}

function indexOf(instance: string): number {
  return Number(instance.slice(instance.lastIndexOf('-') + 1));
}
