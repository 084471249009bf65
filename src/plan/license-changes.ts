// License use per pool before a plan (the observed instances) and after it (makePlan's
// `licenses`), counted with the scheduler's own ledger.
import { LicenseLedger } from '../licensing/license-ledger.js';
import type { Fleet, InstanceGroup, LicensePool, Resources } from '../model/fleet.js';
import { domainNumbers } from '../model/fleet.js';
import type { ObservedInstance, ObservedState } from '../model/observed.js';
import type { Placement } from '../model/placement.js';
import type { LicenseChange } from '../model/plan.js';

/**
 * License use per pool before (the observed instances) and after the plan (the placed instances,
 * and the observed ones that could not be placed, which keep running), with the same ledger, so
 * that an apply that would exceed an entitlement shows.
 */
export function licenseChanges(
  fleet: Fleet,
  placement: Placement,
  observed: ObservedState,
): LicenseChange[] {
  const hostIndex = new Map(fleet.hosts.map((h, i) => [h.name, i]));
  const poolIndex = new Map(fleet.licenses.map((p, i) => [p.name, i]));
  const groupByName = new Map(fleet.groups.map((g) => [g.name, g]));
  const imageByName = new Map(fleet.images.map((i) => [i.name, i]));
  // The ledger keys failure scenarios by number.
  const domains = domainNumbers(fleet);
  const domainOf = (host: string) => domains.get(host) ?? -1;
  const none: readonly string[] = [];
  // An instance's pools: its group's, or its image's when the spec no longer has the group.
  // Looked up once per run of one group's instances (on 100,000, most draw on no pool at all,
  // and then nothing else is looked up).
  let ofGroup: string | undefined;
  let ofImage: string | undefined;
  let pools: readonly string[] = none;
  const add = (
    ledger: LicenseLedger,
    group: string,
    image: string,
    host: string,
    failoverHost: string | null,
    resources: Resources,
  ) => {
    if (group !== ofGroup || image !== ofImage) {
      ofGroup = group;
      ofImage = image;
      pools = groupByName.get(group)?.licenses ?? imageByName.get(image)?.licenses ?? none;
    }
    if (pools.length === 0) return;
    const h = hostIndex.get(host);
    if (h === undefined) return;
    for (const name of pools) {
      const p = poolIndex.get(name);
      if (p === undefined) continue;
      ledger.addPrimary(p, h, resources);
      const t = failoverHost === null ? undefined : hostIndex.get(failoverHost);
      if (t !== undefined) ledger.addFailover(p, t, domainOf(host));
    }
  };
  const addObserved = (ledger: LicenseLedger, o: ObservedInstance) =>
    add(ledger, o.group, o.image, o.host, o.failoverHost, o.resources);
  const before = new LicenseLedger(fleet.licenses, fleet.hosts);
  for (const o of observed.instances) addObserved(before, o);
  const after = new LicenseLedger(fleet.licenses, fleet.hosts);
  let group: InstanceGroup | undefined;
  for (const p of placement.placements) {
    if (p.group !== group?.name) group = groupByName.get(p.group);
    if (group) add(after, p.group, group.image, p.host, p.failoverHost, group.resources);
  }
  const unplaced = new Set(placement.unplaceable.map((u) => u.instance));
  for (const o of unplaced.size > 0 ? observed.instances : []) {
    if (unplaced.has(o.instance)) addObserved(after, o);
  }
  return fleet.licenses.map((pool: LicensePool, i) => ({
    pool: pool.name,
    metric: pool.metric,
    entitlement: pool.entitlement,
    before: before.used(i),
    after: after.used(i),
  }));
}
