// Stage 1 of the stack (stack.ts), classes: what the scheduler knows of each instance group
// before it places anything. Instances of one group are identical (Borg's equivalence classes),
// so the static checks run once per class of identical constraints — kind, OS, arch, required
// labels, spread label — giving the class's member hosts and one FitIndex over them; classes with
// the same members share the index, so a placement updates few indexes.

import { isHostMetric } from '../licensing/license-units.js';
import { VfleetError } from '../model/errors.js';
import type { Fleet, Host, Image, InstanceGroup, LicensePool } from '../model/fleet.js';
import { HOST_DOMAIN } from '../model/fleet.js';
import type { Unplaceable } from '../model/placement.js';
import { type Amounts, demandOf } from './capacity.js';
import { FitIndex } from './fit-index.js';
import { staticReason } from './stack.js';

export interface HostClass {
  readonly id: number;
  readonly mask: Uint8Array;
  readonly members: Int32Array;
  readonly index: FitIndex;
  /** Members interleaved by failure domain: standby reserves spread over every domain. */
  readonly failoverOrder: Int32Array;
  /** Smallest protected demand using the class, per resource: a target with less room is done. */
  readonly minDemand: Amounts;
}

export interface GroupPlan {
  readonly g: number;
  readonly group: InstanceGroup;
  readonly image: Image;
  readonly demand: Amounts;
  /** Lower bound of the FitIndex key of any host that fits the demand. */
  readonly keyBound: number;
  readonly cls: HostClass;
  readonly avoid: readonly number[];
  readonly spread:
    | {
        valueAt: Int32Array;
        counts: Int32Array;
        min: number;
        /** While keeping observed instances: at most this many per value (see keep.ts). */
        keepCaps: Int32Array;
      }
    | undefined;
  readonly pools: readonly number[];
  readonly hostPools: readonly number[];
  readonly coverPools: readonly number[];
  readonly isProtected: boolean;
  /** Per replica: its host, -1 until placed. */
  readonly hostOf: Int32Array;
  /** Per replica: its failover target, -1 when none. */
  readonly targetOf: Int32Array;
  /** Set when a replica could not be placed: the rest of the group fails the same way. */
  failed: Unplaceable['reasons'] | undefined;
  /**
   * Per replica, the name of the observed instance that is it (keep.ts): the same string, so the
   * placement and the plan's lookups by name reuse it instead of making it again. Unset: none.
   */
  observedNames: Array<string | undefined> | undefined;
}

/** What planning the groups reads of the scheduler's state. */
export interface PlanningContext {
  readonly fleet: Fleet;
  readonly hosts: readonly Host[];
  readonly H: number;
  readonly tolerate: number;
  readonly cpuToMem: number;
  readonly domainOf: Int32Array;
  /** Per host: the FitIndexes it is in; planning adds each class's index to its members'. */
  readonly indexesOf: FitIndex[][];
}

export function planGroups(ctx: PlanningContext): GroupPlan[] {
  const fleet = ctx.fleet;
  const imageByName = new Map(fleet.images.map((i) => [i.name, i]));
  const poolIndex = new Map(fleet.licenses.map((p, i) => [p.name, i]));
  const groupIndex = new Map(fleet.groups.map((g, i) => [g.name, i]));
  // Anti-affinity is symmetric: if web avoids db, db must not join a host that has web.
  const avoid: Array<Set<number>> = fleet.groups.map(() => new Set());
  fleet.groups.forEach((group, g) => {
    for (const other of group.placement.avoid) {
      const o = groupIndex.get(other);
      if (o === undefined) continue;
      avoid[g]?.add(o);
      avoid[o]?.add(g);
    }
  });
  const classes = new Classes(ctx);
  return fleet.groups.map((group, g): GroupPlan => {
    const image = imageByName.get(group.image);
    if (!image) {
      throw new VfleetError(
        'unknown-reference',
        `instance group ${group.name}: no image ${group.image}`,
      );
    }
    const demand = demandOf(group, image);
    const cls = classes.classFor(group, image);
    const pools = group.licenses.flatMap((name) => poolIndex.get(name) ?? []);
    const hostPools = pools.filter((p) => isHostMetric(fleet.licenses[p] as LicensePool));
    const isProtected = ctx.tolerate > 0 && group.failover;
    if (isProtected) {
      cls.minDemand.cpu = Math.min(cls.minDemand.cpu, demand.cpu);
      cls.minDemand.memory = Math.min(cls.minDemand.memory, demand.memory);
      cls.minDemand.disk = Math.min(cls.minDemand.disk, demand.disk);
    }
    return {
      g,
      group,
      image,
      demand,
      keyBound: Math.min(demand.memory, demand.cpu * ctx.cpuToMem),
      cls,
      avoid: [...(avoid[g] ?? [])].sort((a, b) => a - b),
      spread: classes.spreadFor(group, cls),
      pools,
      hostPools,
      coverPools: hostPools.filter((p) => (fleet.licenses[p] as LicensePool).coverFailover),
      isProtected,
      hostOf: new Int32Array(group.replicas).fill(-1),
      targetOf: new Int32Array(group.replicas).fill(-1),
      failed: undefined,
      observedNames: undefined,
    };
  });
}

class Classes {
  private readonly byKey = new Map<string, HostClass>();
  private readonly indexes = new Map<string, { index: FitIndex; order: Int32Array }>();
  private readonly spreadValues = new Map<string, { valueAt: Int32Array; values: number }>();

  constructor(private readonly ctx: PlanningContext) {}

  classFor(group: InstanceGroup, image: Image): HostClass {
    const key = JSON.stringify([
      image.kind,
      image.kind === 'container' ? [image.os.family, image.os.release] : image.allowEmulation,
      image.os.arch,
      Object.entries(group.placement.requireLabels).sort(),
      group.placement.spread ?? null,
    ]);
    const known = this.byKey.get(key);
    if (known) return known;
    const { ctx } = this;
    const mask = new Uint8Array(ctx.H);
    const members: number[] = [];
    ctx.hosts.forEach((host, h) => {
      if (staticReason(host, group, image) === null) {
        mask[h] = 1;
        members.push(h);
      }
    });
    // Classes with the same members share one index, so a placement updates each index once.
    const membersKey = members.join(',');
    let shared = this.indexes.get(membersKey);
    if (!shared) {
      const index = new FitIndex(ctx.H);
      for (const h of members) ctx.indexesOf[h]?.push(index);
      shared = { index, order: interleave(members, (h) => ctx.domainOf[h] as number) };
      this.indexes.set(membersKey, shared);
    }
    const cls: HostClass = {
      id: this.byKey.size,
      mask,
      members: Int32Array.from(members),
      index: shared.index,
      failoverOrder: shared.order,
      minDemand: {
        cpu: Number.POSITIVE_INFINITY,
        memory: Number.POSITIVE_INFINITY,
        disk: Number.POSITIVE_INFINITY,
      },
    };
    this.byKey.set(key, cls);
    return cls;
  }

  spreadFor(group: InstanceGroup, cls: HostClass): GroupPlan['spread'] {
    const label = group.placement.spread;
    if (label === undefined) return undefined;
    const cacheKey = `${cls.id}\u0000${label}`;
    const cached = this.spreadValues.get(cacheKey);
    if (cached) {
      return {
        valueAt: cached.valueAt,
        counts: new Int32Array(cached.values),
        min: 0,
        keepCaps: new Int32Array(cached.values),
      };
    }
    const values = new Map<string, number>();
    const valueAt = new Int32Array(this.ctx.H).fill(-1);
    for (const h of cls.members) {
      const value = (this.ctx.hosts[h] as Host).labels[label];
      if (value === undefined) continue;
      let v = values.get(value);
      if (v === undefined) {
        v = values.size;
        values.set(value, v);
      }
      valueAt[h] = v;
    }
    this.spreadValues.set(cacheKey, { valueAt, values: values.size });
    return {
      valueAt,
      counts: new Int32Array(values.size),
      min: 0,
      keepCaps: new Int32Array(values.size),
    };
  }
}

/** Members taking each value of `groupOf` in turn: one host of every rack, then the next. */
export function interleave(
  members: readonly number[],
  groupOf: (h: number) => number | string,
): Int32Array {
  const byGroup = new Map<number | string, number[]>();
  for (const h of members) {
    const d = groupOf(h);
    const list = byGroup.get(d);
    if (list) list.push(h);
    else byGroup.set(d, [h]);
  }
  const lists = [...byGroup.values()];
  const order: number[] = [];
  for (let round = 0; order.length < members.length; round++) {
    for (const list of lists) if (round < list.length) order.push(list[round] as number);
  }
  return Int32Array.from(order);
}

/**
 * The order new hosts open in among equally empty ones: each value of the failure domain in
 * turn when it is a label, else of the label most groups spread over, else host order. Indexed
 * in that order (backwards, as an index bucket is last-in first-out), new hosts open rack by
 * rack in rotation, so racks fill evenly and spread groups find room in every rack.
 */
export function openingOrder(ctx: PlanningContext): Int32Array {
  const all = Array.from({ length: ctx.H }, (_, h) => h);
  const domain = ctx.fleet.failover.domain;
  if (ctx.tolerate > 0 && domain !== HOST_DOMAIN) {
    return interleave(all, (h) => ctx.domainOf[h] as number);
  }
  const spreads = new Map<string, number>();
  for (const g of ctx.fleet.groups) {
    const label = g.placement.spread;
    if (label !== undefined) spreads.set(label, (spreads.get(label) ?? 0) + g.replicas);
  }
  const label = [...spreads].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]?.[0];
  if (label === undefined) return interleave(all, (h) => h);
  return interleave(all, (h) => (ctx.hosts[h] as Host).labels[label] ?? '');
}
