// Independent re-computation of what a placement must satisfy, from the fleet and the placement
// alone (not from the scheduler's own bookkeeping), for the property tests. The failover scenarios
// are recomputed here on purpose rather than imported from src/scheduler/failover-scenarios.ts,
// which the scheduler and the failover audit share: a test that used it would check it with
// itself.
import { hostUnits, instanceUnits, isHostMetric } from '../../src/licensing/license-units.js';
import type { Fleet, Host } from '../../src/model/fleet.js';
import { failureDomainOf } from '../../src/model/fleet.js';
import type { Placement } from '../../src/model/placement.js';
import { allocatable, demandOf } from '../../src/scheduler/capacity.js';
import { STATIC_CHECKS } from '../../src/scheduler/stack.js';

type Vec = [number, number, number];

export function checkInvariants(fleet: Fleet, placement: Placement): string[] {
  const problems: string[] = [];
  const hostIndex = new Map(fleet.hosts.map((h, i) => [h.name, i]));
  const groupByName = new Map(fleet.groups.map((g) => [g.name, g]));
  const imageByName = new Map(fleet.images.map((i) => [i.name, i]));
  const domainOf = (h: Host) => failureDomainOf(fleet, h);
  const demand = (group: string): Vec => {
    const g = groupByName.get(group);
    const d = demandOf(g!, imageByName.get(g!.image)!);
    return [d.cpu, d.memory, d.disk];
  };
  const used = fleet.hosts.map((): Vec => [0, 0, 0]);
  const groupsOn = fleet.hosts.map(() => new Set<string>());
  // scenario (failed domain) → target host → load
  const scenario = new Map<string, Map<number, Vec>>();
  for (const p of placement.placements) {
    const h = hostIndex.get(p.host)!;
    const host = fleet.hosts[h]!;
    const group = groupByName.get(p.group)!;
    const image = imageByName.get(group.image)!;
    for (const check of STATIC_CHECKS) {
      if (!check.check(host, group, image).ok)
        problems.push(`${p.instance} on ${p.host} fails ${check.name}`);
    }
    const d = demand(p.group);
    for (let k = 0; k < 3; k++) used[h]![k]! += d[k]!;
    groupsOn[h]!.add(p.group);
    if (p.failoverHost !== null) {
      const t = hostIndex.get(p.failoverHost)!;
      if (domainOf(fleet.hosts[t]!) === domainOf(host)) {
        problems.push(`${p.instance}: failover host ${p.failoverHost} is in its own domain`);
      }
      if (!group.failover) problems.push(`${p.instance} is not protected but has a failover host`);
      const loads = scenario.get(domainOf(host)) ?? new Map<number, Vec>();
      scenario.set(domainOf(host), loads);
      const load = loads.get(t) ?? [0, 0, 0];
      for (let k = 0; k < 3; k++) load[k]! += d[k]!;
      loads.set(t, load);
    } else if (group.failover && fleet.failover.tolerate > 0) {
      problems.push(`${p.instance} is protected but has no failover host`);
    }
  }
  // Capacity: used + the worst single-domain failure ≤ allocatable, on every host.
  const reserve = fleet.hosts.map((): Vec => [0, 0, 0]);
  for (const loads of scenario.values()) {
    for (const [t, load] of loads)
      for (let k = 0; k < 3; k++) reserve[t]![k] = Math.max(reserve[t]![k]!, load[k]!);
  }
  fleet.hosts.forEach((host, h) => {
    const cap = allocatable(host);
    const c: Vec = [cap.cpu, cap.memory, cap.disk];
    for (let k = 0; k < 3; k++) {
      if (used[h]![k]! + reserve[h]![k]! > c[k]!) {
        problems.push(
          `${host.name} over capacity in resource ${k}: ${used[h]![k]} + ${reserve[h]![k]} > ${c[k]}`,
        );
      }
    }
    const reported = placement.hosts[h]!;
    if (Math.abs(reported.reserved.memoryMiB - reserve[h]![1]!) > 1e-6) {
      problems.push(
        `${host.name}: reported reserve ${reported.reserved.memoryMiB} MiB, recomputed ${reserve[h]![1]}`,
      );
    }
  });
  // Anti-affinity, symmetric.
  fleet.hosts.forEach((host, h) => {
    for (const g of groupsOn[h]!) {
      for (const other of groupByName.get(g)!.placement.avoid) {
        if (groupsOn[h]!.has(other) && (other !== g || countOn(placement, host.name, g) > 1)) {
          problems.push(`${host.name} holds ${g} and ${other}, which ${g} avoids`);
        }
      }
    }
  });
  // Spread: max skew 1 over the label values of the hosts the group may use.
  for (const group of fleet.groups) {
    const label = group.placement.spread;
    if (!label) continue;
    const image = imageByName.get(group.image)!;
    const counts = new Map<string, number>();
    for (const host of fleet.hosts) {
      if (STATIC_CHECKS.every((c) => c.check(host, group, image).ok))
        counts.set(host.labels[label]!, 0);
    }
    for (const p of placement.placements) {
      if (p.group !== group.name) continue;
      const value = fleet.hosts[hostIndex.get(p.host)!]!.labels[label]!;
      counts.set(value, (counts.get(value) ?? 0) + 1);
    }
    const values = [...counts.values()];
    if (values.length > 0 && Math.max(...values) - Math.min(...values) > 1) {
      problems.push(
        `group ${group.name} spread over ${label} is skewed: ${JSON.stringify(Object.fromEntries(counts))}`,
      );
    }
  }
  // Licenses: recomputed use equals the reported use, and stays within the entitlement.
  fleet.licenses.forEach((pool, i) => {
    let units = 0;
    // Hosts the spec assigns to a pool count whatever is placed; the scheduler adds nothing past
    // the entitlement, but cannot take back what the spec itself assigned.
    let assigned = 0;
    if (isHostMetric(pool)) {
      const primary = new Map<number, number>();
      const failover = new Map<number, Map<string, number>>();
      const counted = new Set<number>();
      fleet.hosts.forEach((host, h) => {
        if (host.licenses.includes(pool.name)) {
          counted.add(h);
          assigned += hostUnits(pool, host.cpu, 0);
        }
      });
      for (const p of placement.placements) {
        if (!groupByName.get(p.group)!.licenses.includes(pool.name)) continue;
        const h = hostIndex.get(p.host)!;
        counted.add(h);
        primary.set(h, (primary.get(h) ?? 0) + 1);
        if (pool.coverFailover && p.failoverHost !== null) {
          const t = hostIndex.get(p.failoverHost)!;
          counted.add(t);
          const bySource = failover.get(t) ?? new Map<string, number>();
          failover.set(t, bySource);
          const source = domainOf(fleet.hosts[h]!);
          bySource.set(source, (bySource.get(source) ?? 0) + 1);
        }
      }
      for (const h of counted) {
        const worst = Math.max(0, ...(failover.get(h)?.values() ?? []));
        units += hostUnits(pool, fleet.hosts[h]!.cpu, (primary.get(h) ?? 0) + worst);
      }
    } else {
      for (const p of placement.placements) {
        const group = groupByName.get(p.group)!;
        if (group.licenses.includes(pool.name)) units += instanceUnits(pool, group.resources);
      }
    }
    const reported = placement.licenses[i]!;
    if (reported.used !== units)
      problems.push(`pool ${pool.name}: reported ${reported.used} units, recomputed ${units}`);
    if (units > Math.max(pool.entitlement, assigned)) {
      problems.push(`pool ${pool.name}: ${units} units over the entitlement ${pool.entitlement}`);
    }
  });
  return problems;
}

function countOn(placement: Placement, host: string, group: string): number {
  return placement.placements.filter((p) => p.host === host && p.group === group).length;
}
