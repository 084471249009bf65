// schedule(fleet, observed) → Placement: every instance on a host, exactly (no sampling) and
// deterministically (ties go to the host seen first; nothing random, no clock).
//
// The stack, in the order it runs (habit 4, docs/architecture.md):
//   1. classes   — instances of one group are identical (Borg's equivalence classes); the static
//                  checks (host-checks.ts) run once per class of identical constraints, giving its
//                  member hosts and one FitIndex over them.
//   2. keep      — an observed instance whose host still passes every check stays, so a small
//                  spec change gives a small plan. Done before anything new is placed, so new
//                  instances cannot crowd out old ones.
//   3. place     — the remaining replicas: groups on licensed hosts first, then the others
//                  interleaved so that memory-heavy and vCPU-heavy replicas arrive mixed (each
//                  queue most constrained and largest first: first-fit decreasing packs better),
//                  each replica on:
//                    a host already licensed for its host-metric pools, if one fits and stays
//                    fillable (licenses cost nothing more there), else the host that adds the
//                    fewest license units;
//                    then best-fit (binpack: the smallest effective free capacity that fits) or
//                    worst-fit (spread) through the class's FitIndex.
//                  A candidate passes the dynamic checks: capacity (after standby reserves),
//                  anti-affinity, spread skew ≤ 1, license entitlement, and — for protected
//                  instances — a failover target outside its failure domain.
//   4. report    — placements in spec order, host usage and reserves, license use, and for each
//                  unplaceable instance how many hosts each reason ruled out.
//
// Failover (tolerate 1): a scenario is the loss of one failure domain. When a protected
// instance is placed in domain d, it gets a target host outside d that can take it in scenario
// d: used + load[d] + demand ≤ capacity. The host's reserve is the per-resource maximum of its
// loads over scenarios — scenarios share reserves, since only one happens at a time — and
// normal placements only use capacity − used − reserve, so no placement can break a scenario.

import { LicenseLedger } from '../licensing/license-ledger.js';
import { isHostMetric } from '../licensing/license-units.js';
import { VfleetError } from '../model/errors.js';
import type { Fleet, Host, Image, InstanceGroup, LicensePool } from '../model/fleet.js';
import { domainNumbers, HOST_DOMAIN, replicaName } from '../model/fleet.js';
import {
  type Explanation,
  type HostVerdict,
  NOTHING_OBSERVED,
  type ObservedPlacement,
  PLACEMENT_FORMAT_VERSION,
  type Placement,
  type PlacementEntry,
  type Unplaceable,
} from '../model/placement.js';
import { type Amounts, allocatable, demandOf } from './capacity.js';
import { FitIndex, MAX_KEY } from './fit-index.js';

/**
 * Keys from here up belong to empty hosts, ordered by their capacity: binpack fills the hosts
 * already in use (best fit) and only then opens a new one, the largest first, so a fleet of
 * mixed host sizes ends up on as few hosts as it can.
 */
const EMPTY = (MAX_KEY + 1) / 2;
/** Hosts visited when looking for a fillable one to buy licenses on: a bound on work. */
const FILLABLE_CANDIDATES = 256;
/** Surplus keys are offset by this, so that negative surpluses (unfillable hosts) keep their order. */
const SURPLUS_ZERO = EMPTY;
/** Above this many failure domains (domain: host on a large fleet), reserves grow by cursor only. */
const MAX_SLACK_DOMAINS = 64;
/** Reserves weighed when one must grow: a bound on work, not on correctness (any choice fits). */
const GROWTH_CANDIDATES = 64;
/** Hosts weighed when an instance must buy license units: a bound on work; any choice fits. */
const LICENSE_CANDIDATES = 32;

import { STATIC_CHECKS } from './host-checks.js';

export interface ScheduleOptions {
  /** Evaluate every host for this instance when its turn comes, for `explain`. */
  readonly explain?: string;
}

export interface ScheduleResult {
  readonly placement: Placement;
  readonly explanation: Explanation | undefined;
}

export function schedule(
  fleet: Fleet,
  observed: ObservedPlacement = NOTHING_OBSERVED,
  options: ScheduleOptions = {},
): Placement {
  return new Scheduler(fleet, options).run(observed).placement;
}

/** Schedules and explains one instance: every host's verdict and score at its turn. */
export function explain(
  fleet: Fleet,
  instance: string,
  observed: ObservedPlacement = NOTHING_OBSERVED,
): ScheduleResult {
  return new Scheduler(fleet, { explain: instance }).run(observed);
}

interface HostClass {
  readonly id: number;
  readonly mask: Uint8Array;
  readonly members: Int32Array;
  readonly index: FitIndex;
  /** Members interleaved by failure domain: standby reserves spread over every domain. */
  readonly failoverOrder: Int32Array;
  /** Smallest protected demand using the class, per resource: a target with less room is done. */
  readonly minDemand: Amounts;
}

interface GroupPlan {
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
        /** While keeping observed instances: at most this many per value (see keepCapsOf). */
        keepCaps: Int32Array;
      }
    | undefined;
  readonly pools: readonly number[];
  readonly hostPools: readonly number[];
  readonly coverPools: readonly number[];
  readonly isProtected: boolean;
  readonly hostOf: Int32Array;
  readonly targetOf: Int32Array;
  failed: Record<string, number> | undefined;
}

class Scheduler {
  private readonly fleet: Fleet;
  private readonly options: ScheduleOptions;
  private readonly hosts: readonly Host[];
  private readonly H: number;
  private readonly capCpu: Float64Array;
  private readonly capMem: Float64Array;
  private readonly capDisk: Float64Array;
  private readonly usedCpu: Float64Array;
  private readonly usedMem: Float64Array;
  private readonly usedDisk: Float64Array;
  private readonly resCpu: Float64Array;
  private readonly resMem: Float64Array;
  private readonly resDisk: Float64Array;
  /** MiB per milli-vCPU of the whole fleet: makes CPU and memory comparable in one key. */
  private readonly cpuToMem: number;
  /** MiB per GiB of disk of the whole fleet, for weighing reserve growth. */
  private readonly diskToMem: number;
  private readonly domainOf: Int32Array;
  private readonly domainCount: number;
  private readonly groupsOn: Array<Map<number, number>>;
  private readonly indexesOf: FitIndex[][];
  /** Per host: failure domain → what would land here if that domain failed. */
  private readonly scenarioLoad: Array<Map<number, Float64Array> | undefined>;
  private readonly cursors = new Map<number, number>();
  /** Per pool: its counted hosts interleaved by failure domain (see countedByDomain). */
  private readonly countedOrder = new Map<number, Int32Array>();
  /**
   * Per failure domain d (when there are few enough domains): hosts keyed by their slack for
   * scenario d — reserve minus what d's failure already lands there. A protected instance of d
   * first goes into existing slack, so every scenario fills the same reserves before any grows.
   */
  private readonly slack: FitIndex[] | undefined;
  /** Failover targets found during one placement, by domain: the state does not change meanwhile. */
  private readonly targetMemo = new Map<number, number>();
  private readonly ledger: LicenseLedger;
  /** Per host-metric pool: counted hosts where one more licensed instance costs no units. */
  private readonly zeroCost: Array<FitIndex | undefined>;
  /**
   * The same hosts keyed by their surplus (see `surplus`), when `fill` is known: best fit in
   * surplus puts a licensed instance where its extra memory (or vCPUs) leaves the host fillable.
   */
  private readonly zeroSurplus: Array<FitIndex | undefined>;
  /** Per host: the surplus indexes it is in. */
  private readonly surplusOf: FitIndex[][];
  private readonly plans: GroupPlan[];
  private readonly tolerate: number;
  private readonly fill: { cpuBinds: boolean; ratio: number } | undefined;
  private lastTarget = -1;
  /** An observed failover host to try first while keeping its instance. */
  private preferredTarget = -1;
  private keeping = false;
  private explanation: Explanation | undefined;

  constructor(fleet: Fleet, options: ScheduleOptions) {
    if (fleet.failover.tolerate > 1) {
      throw new VfleetError(
        'unsupported-tolerance',
        `failover.tolerate ${fleet.failover.tolerate} is not supported; vfleet reserves for one failed ${fleet.failover.domain} at a time (see docs/scheduler.md)`,
      );
    }
    this.fleet = fleet;
    this.options = options;
    this.hosts = fleet.hosts;
    const H = fleet.hosts.length;
    this.H = H;
    this.capCpu = new Float64Array(H);
    this.capMem = new Float64Array(H);
    this.capDisk = new Float64Array(H);
    this.usedCpu = new Float64Array(H);
    this.usedMem = new Float64Array(H);
    this.usedDisk = new Float64Array(H);
    this.resCpu = new Float64Array(H);
    this.resMem = new Float64Array(H);
    this.resDisk = new Float64Array(H);
    let totalCpu = 0;
    let totalMem = 0;
    let totalDisk = 0;
    fleet.hosts.forEach((host, h) => {
      const cap = allocatable(host);
      this.capCpu[h] = cap.cpu;
      this.capMem[h] = cap.memory;
      this.capDisk[h] = cap.disk;
      totalCpu += cap.cpu;
      totalMem += cap.memory;
      totalDisk += cap.disk;
    });
    this.cpuToMem = totalCpu > 0 ? totalMem / totalCpu : 1;
    this.diskToMem = totalDisk > 0 ? totalMem / totalDisk : 1;
    this.tolerate = fleet.failover.tolerate;
    const domains = domainNumbers(fleet);
    this.domainOf = Int32Array.from(fleet.hosts, (host) => domains.get(host.name) as number);
    this.domainCount = new Set(domains.values()).size;
    this.slack =
      this.tolerate > 0 && this.domainCount <= MAX_SLACK_DOMAINS
        ? Array.from({ length: this.domainCount }, () => new FitIndex(H, 22))
        : undefined;
    this.groupsOn = Array.from({ length: H }, () => new Map());
    this.indexesOf = Array.from({ length: H }, () => []);
    this.scenarioLoad = new Array(H);
    this.ledger = new LicenseLedger(fleet.licenses, fleet.hosts);
    this.zeroCost = fleet.licenses.map((pool) =>
      isHostMetric(pool) ? new FitIndex(H) : undefined,
    );
    this.surplusOf = Array.from({ length: H }, () => []);
    this.plans = this.planGroups();
    this.fill = this.fillOf(totalCpu, totalMem);
    this.zeroSurplus = fleet.licenses.map((pool) =>
      isHostMetric(pool) && this.fill ? new FitIndex(H) : undefined,
    );
    fleet.licenses.forEach((_, pool) => {
      for (const h of this.ledger.countedHosts(pool)) this.refreshZeroCost(pool, h);
    });
  }

  /**
   * Which resource the fleet runs out of first (demand over capacity, all hosts), and the memory
   * per vCPU of the groups that fill hosts after the licensed ones; undefined when none do.
   */
  private fillOf(capCpu: number, capMem: number): { cpuBinds: boolean; ratio: number } | undefined {
    let cpu = 0;
    let memory = 0;
    let fillCpu = 0;
    let fillMem = 0;
    for (const p of this.plans) {
      const n = p.group.replicas;
      cpu += n * p.demand.cpu;
      memory += n * p.demand.memory;
      if (p.hostPools.length === 0) {
        fillCpu += n * p.demand.cpu;
        fillMem += n * p.demand.memory;
      }
    }
    if (fillCpu === 0 || fillMem === 0 || capCpu === 0 || capMem === 0) return undefined;
    return { cpuBinds: cpu / capCpu >= memory / capMem, ratio: fillMem / fillCpu };
  }

  run(observed: ObservedPlacement): ScheduleResult {
    this.keepObserved(observed);
    const unplaceable: Unplaceable[] = [];
    for (const [p, i] of this.placementSequence()) {
      const name = replicaName(p.group.name, i);
      const explaining = this.options.explain === name;
      if (explaining) this.explanation = this.evaluateAll(p, name, false);
      const host = p.failed ? -1 : this.choose(p);
      if (host < 0) {
        p.failed ??= this.reasonsAcrossHosts(p);
        unplaceable.push({ instance: name, group: p.group.name, reasons: p.failed });
        continue;
      }
      this.commit(p, i, host, this.lastTarget);
      if (explaining) this.markChosen(host);
    }
    return { placement: this.report(unplaceable), explanation: this.explanation };
  }

  // --- 1. classes -------------------------------------------------------------------------

  private planGroups(): GroupPlan[] {
    const fleet = this.fleet;
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
    const classes = new Map<string, HostClass>();
    const indexes = new Map<string, { index: FitIndex; order: Int32Array }>();
    const plans = fleet.groups.map((group, g): GroupPlan => {
      const image = imageByName.get(group.image);
      if (!image) {
        throw new VfleetError(
          'unknown-reference',
          `instance group ${group.name}: no image ${group.image}`,
        );
      }
      const demand = demandOf(group, image);
      const cls = this.classFor(group, image, classes, indexes);
      const pools = group.licenses.flatMap((name) => poolIndex.get(name) ?? []);
      const hostPools = pools.filter((p) => isHostMetric(fleet.licenses[p] as LicensePool));
      const isProtected = this.tolerate > 0 && group.failover;
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
        keyBound: Math.min(demand.memory, demand.cpu * this.cpuToMem),
        cls,
        avoid: [...(avoid[g] ?? [])].sort((a, b) => a - b),
        spread: this.spreadFor(group, cls),
        pools,
        hostPools,
        coverPools: hostPools.filter((p) => (fleet.licenses[p] as LicensePool).coverFailover),
        isProtected,
        hostOf: new Int32Array(group.replicas).fill(-1),
        targetOf: new Int32Array(group.replicas).fill(-1),
        failed: undefined,
      };
    });
    // Index hosts in an order that takes each failure domain in turn (backwards, as an index
    // bucket is last-in first-out): among equally empty hosts, new ones open rack by rack in
    // rotation, so racks fill evenly and spread groups find room in every rack.
    const rotation = this.interleaveByDomain(
      Array.from({ length: this.H }, (_, h) => h),
      this.rotationOf(),
    );
    for (let i = rotation.length - 1; i >= 0; i--) this.updateKey(rotation[i] as number);
    return plans;
  }

  private classFor(
    group: InstanceGroup,
    image: Image,
    classes: Map<string, HostClass>,
    indexes: Map<string, { index: FitIndex; order: Int32Array }>,
  ): HostClass {
    const key = JSON.stringify([
      image.kind,
      image.kind === 'container' ? [image.os.family, image.os.release] : image.allowEmulation,
      image.os.arch,
      Object.entries(group.placement.requireLabels).sort(),
      group.placement.spread ?? null,
    ]);
    const known = classes.get(key);
    if (known) return known;
    const mask = new Uint8Array(this.H);
    const members: number[] = [];
    this.hosts.forEach((host, h) => {
      if (STATIC_CHECKS.every((c) => c.check(host, group, image).ok)) {
        mask[h] = 1;
        members.push(h);
      }
    });
    // Classes with the same members share one index, so a placement updates each index once.
    const membersKey = members.join(',');
    let shared = indexes.get(membersKey);
    if (!shared) {
      const index = new FitIndex(this.H);
      for (const h of members) this.indexesOf[h]?.push(index);
      shared = { index, order: this.interleaveByDomain(members) };
      indexes.set(membersKey, shared);
    }
    const cls: HostClass = {
      id: classes.size,
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
    classes.set(key, cls);
    return cls;
  }

  /** Members taking each value of `groupOf` in turn: one host of every rack, then the next. */
  private interleaveByDomain(
    members: readonly number[],
    groupOf: (h: number) => number | string = (h) => this.domainOf[h] as number,
  ): Int32Array {
    const byDomain = new Map<number | string, number[]>();
    for (const h of members) {
      const d = groupOf(h);
      const list = byDomain.get(d);
      if (list) list.push(h);
      else byDomain.set(d, [h]);
    }
    const lists = [...byDomain.values()];
    const order: number[] = [];
    for (let round = 0; order.length < members.length; round++) {
      for (const list of lists) if (round < list.length) order.push(list[round] as number);
    }
    return Int32Array.from(order);
  }

  /**
   * What new hosts rotate over: the failure domain when it is a label, else the label most
   * groups spread over, else none (host order).
   */
  private rotationOf(): (h: number) => number | string {
    const domain = this.fleet.failover.domain;
    if (this.tolerate > 0 && domain !== HOST_DOMAIN) return (h) => this.domainOf[h] as number;
    const spreads = new Map<string, number>();
    for (const g of this.fleet.groups) {
      const label = g.placement.spread;
      if (label !== undefined) spreads.set(label, (spreads.get(label) ?? 0) + g.replicas);
    }
    const label = [...spreads].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]?.[0];
    if (label === undefined) return (h) => h;
    return (h) => (this.hosts[h] as Host).labels[label] ?? '';
  }

  private readonly spreadValues = new Map<string, { valueAt: Int32Array; values: number }>();

  private spreadFor(group: InstanceGroup, cls: HostClass): GroupPlan['spread'] {
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
    const valueAt = new Int32Array(this.H).fill(-1);
    for (const h of cls.members) {
      const value = (this.hosts[h] as Host).labels[label];
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

  /**
   * The replicas still to place, as one sequence that mixes the resources. Best fit fills the
   * hosts in use before it opens one, so each host receives what the sequence brings while it
   * fills; sorted by size alone, the memory-heavy VMs come as one run and fill hosts' memory with
   * their vCPUs idle. So, after the licensed groups (which go first, as they are: they
   * concentrate on the few licensed hosts before anything else takes the room there), each tier
   * of equally constrained groups — most constrained first, as placementOrder has them, so a
   * constrained group still gets its hosts before a freer one takes them — is split into those
   * heavier in memory than the demand as a whole (memory per vCPU above the total's) and the
   * rest, and merged replica by replica so that what has been sequenced so far keeps the
   * total's memory per vCPU. Within each queue the order stays largest first.
   */
  private *placementSequence(): Generator<readonly [GroupPlan, number]> {
    const all = this.placementOrder();
    const licensed = new ReplicaQueue(all.filter((p) => p.hostPools.length > 0));
    for (let next = licensed.next(); next; next = licensed.next()) yield next;
    const order = all.filter((p) => p.hostPools.length === 0);
    const unplaced = (p: GroupPlan) => {
      let n = 0;
      for (let i = 0; i < p.group.replicas; i++) if ((p.hostOf[i] as number) < 0) n++;
      return n;
    };
    let totalCpu = 0;
    let totalMem = 0;
    for (const p of order) {
      const n = unplaced(p);
      totalCpu += n * p.demand.cpu;
      totalMem += n * p.demand.memory;
    }
    const ratio = totalCpu > 0 ? totalMem / totalCpu : 0;
    const isHeavy = (p: GroupPlan) => p.demand.memory > ratio * p.demand.cpu;
    const rank = new Map(order.map((p, r) => [p, r]));
    // The mix carries over from tier to tier: a tier that was all heavy is balanced by the next.
    let cpu = 0;
    let memory = 0;
    for (let from = 0; from < order.length; ) {
      const tier = constraintsOf(order[from] as GroupPlan);
      let to = from;
      while (to < order.length && constraintsOf(order[to] as GroupPlan) === tier) to++;
      const groups = order.slice(from, to);
      from = to;
      const heavy = new ReplicaQueue(groups.filter(isHeavy));
      const light = new ReplicaQueue(groups.filter((p) => !isHeavy(p)));
      for (;;) {
        // Memory behind the total's ratio takes a heavy replica, ahead a light one; level (as
        // at the start) the one that comes first in placementOrder.
        const lead = memory - ratio * cpu;
        const takeHeavy =
          light.done ||
          (!heavy.done &&
            (lead < 0 ||
              (lead === 0 &&
                (rank.get(heavy.head as GroupPlan) as number) <
                  (rank.get(light.head as GroupPlan) as number))));
        const next = (takeHeavy ? heavy : light).next();
        if (!next) break;
        cpu += next[0].demand.cpu;
        memory += next[0].demand.memory;
        yield next;
      }
    }
  }

  /** Most constrained first, then largest first (first-fit decreasing), then spec order. */
  private placementOrder(): GroupPlan[] {
    const constraints = constraintsOf;
    // Groups that draw on host-metric pools go first: they concentrate on few licensed hosts
    // before anything else takes the room there.
    const licensed = (p: GroupPlan) => (p.hostPools.length > 0 ? 1 : 0);
    return [...this.plans].sort(
      (a, b) =>
        licensed(b) - licensed(a) ||
        constraints(b) - constraints(a) ||
        b.keyBound - a.keyBound ||
        b.demand.memory - a.demand.memory ||
        a.g - b.g,
    );
  }

  // --- 2. keep ----------------------------------------------------------------------------

  private keepObserved(observed: ObservedPlacement): void {
    const hostByName = new Map(this.hosts.map((h, i) => [h.name, i]));
    const wanted = new Map<string, { host: number; target: number }>();
    for (const { instance, host, failoverHost } of observed.instances) {
      const h = hostByName.get(host);
      const t = failoverHost ? (hostByName.get(failoverHost) ?? -1) : -1;
      if (h !== undefined) wanted.set(instance, { host: h, target: t });
    }
    if (wanted.size === 0) return;
    this.keeping = true;
    for (const p of this.plans) {
      if (p.spread) {
        // Kept replicas are judged as a set, not in the order they happen to be visited.
        const observedCounts = new Int32Array(p.spread.counts.length);
        for (let i = 0; i < p.group.replicas; i++) {
          const w = wanted.get(replicaName(p.group.name, i));
          const v = w ? (p.spread.valueAt[w.host] as number) : -1;
          if (v >= 0) observedCounts[v] = (observedCounts[v] as number) + 1;
        }
        p.spread.keepCaps = keepCapsOf(observedCounts, p.group.replicas);
      }
      for (let i = 0; i < p.group.replicas; i++) {
        const name = replicaName(p.group.name, i);
        const w = wanted.get(name);
        if (w === undefined) continue;
        if (this.options.explain === name) this.explanation = this.evaluateAll(p, name, true);
        this.preferredTarget = w.target;
        this.targetMemo.clear();
        if (p.cls.mask[w.host] && this.dynamicReason(p, w.host) === null) {
          this.commit(p, i, w.host, this.lastTarget);
          if (this.options.explain === name) this.markChosen(w.host);
        }
      }
      if (p.spread) {
        let min = Number.POSITIVE_INFINITY;
        for (const c of p.spread.counts) if (c < min) min = c;
        p.spread.min = p.spread.counts.length > 0 ? min : 0;
      }
    }
    this.preferredTarget = -1;
    this.keeping = false;
  }

  // --- 3. place ---------------------------------------------------------------------------

  private choose(p: GroupPlan): number {
    this.targetMemo.clear();
    const accept = (h: number) => this.dynamicReason(p, h) === null;
    if (p.hostPools.length > 0) return this.chooseLicensed(p, accept);
    const index = p.cls.index;
    const find = (take: (h: number) => boolean) => {
      if (p.group.placement.strategy === 'spread') return index.descending(p.keyBound, take);
      const open = index.ascending(p.keyBound, take, EMPTY);
      return open >= 0 ? open : index.descending(EMPTY, take);
    };
    const host = find(accept);
    // The accepted host was the last one checked, so lastTarget is its failover target.
    return host;
  }

  /**
   * The license scorer. A host where the instance adds no license units (licensed for
   * Datacenter already, or with a free Standard slot) wins, best fit among them. Otherwise the
   * instance must buy units, and buys where they go furthest, weighing the first
   * LICENSE_CANDIDATES hosts that pass: for a pool whose licensing covers any number of
   * instances (Datacenter, RHEL per socket pair), the lowest units per room left, roomiest
   * first, since the room is what the units buy; for stacked rights (Standard: 2 instances per
   * licensing), the fewest units, best fit first, since room beyond the stack buys nothing.
   *
   * Both prefer a host that stays fillable (see `fill`): licensed VMs are often heavy in one
   * resource, and a licensed host full of them strands the other — vCPUs nothing else can use.
   * So the order is: free and fillable (best fit in surplus), bought and fillable, free, bought.
   */
  private chooseLicensed(p: GroupPlan, accept: (h: number) => boolean): number {
    if (this.fill === undefined) return this.licensedHost(p, accept, Number.POSITIVE_INFINITY);
    const taken = this.surplusTaken(p);
    const fillable = (h: number) => this.surplus(h) >= taken && accept(h);
    if (p.group.placement.strategy !== 'spread') {
      const bySurplus = this.zeroSurplus[p.hostPools[0] as number] as FitIndex;
      const member = (h: number) => p.cls.mask[h] === 1 && accept(h);
      const free = bySurplus.ascending(SURPLUS_ZERO + taken, member);
      if (free >= 0) return free; // the last host checked: lastTarget is its failover target
    }
    const host = this.licensedHost(p, fillable, FILLABLE_CANDIDATES);
    return host >= 0 ? host : this.licensedHost(p, accept, Number.POSITIVE_INFINITY);
  }

  /** A free host, else the best one to buy units on among the first `visits` hosts weighed. */
  private licensedHost(p: GroupPlan, accept: (h: number) => boolean, visits: number): number {
    const pool = p.hostPools[0] as number;
    const zero = this.zeroCost[pool] as FitIndex;
    const member = (h: number) => p.cls.mask[h] === 1 && accept(h);
    const free =
      p.group.placement.strategy === 'spread'
        ? zero.descending(p.keyBound, member)
        : zero.ascending(p.keyBound, member);
    if (free >= 0) return free; // the last host checked: lastTarget is its failover target
    const stacked = (this.fleet.licenses[pool] as LicensePool).instancesPerUnit !== undefined;
    let best = -1;
    let bestCost = Number.POSITIVE_INFINITY;
    let seen = 0;
    let visited = 0;
    const weigh = (h: number) => {
      if (!accept(h)) return ++visited >= visits;
      const units = this.licenseUnits(p, h);
      const cost = stacked ? units : units / Math.max(1, this.free(h));
      if (cost < bestCost) {
        best = h;
        bestCost = cost;
      }
      return ++seen >= LICENSE_CANDIDATES || ++visited >= visits;
    };
    if (stacked) p.cls.index.ascending(p.keyBound, weigh);
    else p.cls.index.descending(p.keyBound, weigh);
    if (best >= 0 && p.isProtected) this.dynamicReason(p, best);
    return best;
  }

  /**
   * The dynamic checks, cheapest first; null when the host takes the instance. For a protected
   * instance it also finds the failover target, left in `lastTarget`.
   */
  private dynamicReason(p: GroupPlan, h: number): string | null {
    const d = p.demand;
    if (this.capCpu[h]! - this.usedCpu[h]! - this.resCpu[h]! < d.cpu) return 'insufficient-cpu';
    if (this.capMem[h]! - this.usedMem[h]! - this.resMem[h]! < d.memory)
      return 'insufficient-memory';
    if (this.capDisk[h]! - this.usedDisk[h]! - this.resDisk[h]! < d.disk)
      return 'insufficient-disk';
    if (p.avoid.length > 0) {
      const present = this.groupsOn[h] as Map<number, number>;
      for (const a of p.avoid) if (present.has(a)) return 'anti-affinity';
    }
    if (p.spread) {
      const v = p.spread.valueAt[h] as number;
      const count = p.spread.counts[v] as number;
      if (
        v < 0 ||
        (this.keeping ? count >= (p.spread.keepCaps[v] as number) : count !== p.spread.min)
      ) {
        return 'spread-skew';
      }
    }
    for (const pool of p.pools) {
      if (!this.ledger.affordable(pool, this.ledger.primaryDelta(pool, h, p.group.resources))) {
        return `license-exhausted:${(this.fleet.licenses[pool] as LicensePool).name}`;
      }
    }
    this.lastTarget = -1;
    if (p.isProtected) {
      const t = this.findTarget(p, this.domainOf[h] as number, h);
      if (t < 0) return 'failover-capacity';
      for (const pool of p.coverPools) {
        const units =
          this.ledger.primaryDelta(pool, h, p.group.resources) +
          this.ledger.failoverDelta(pool, t, this.domainOf[h] as number);
        if (!this.ledger.affordable(pool, units)) {
          return `license-exhausted:${(this.fleet.licenses[pool] as LicensePool).name}`;
        }
      }
      this.lastTarget = t;
    }
    return null;
  }

  /** Whether `t` can take the demand in the scenario where domain `d` fails. */
  private fitsScenario(t: number, d: number, demand: Amounts): boolean {
    const load = this.scenarioLoad[t]?.get(d);
    const c = load ? (load[0] as number) : 0;
    const m = load ? (load[1] as number) : 0;
    const k = load ? (load[2] as number) : 0;
    return (
      this.usedCpu[t]! + c + demand.cpu <= this.capCpu[t]! &&
      this.usedMem[t]! + m + demand.memory <= this.capMem[t]! &&
      this.usedDisk[t]! + k + demand.disk <= this.capDisk[t]!
    );
  }

  /**
   * A failover target for an instance of `p` placed in domain `d`: a host of its class outside
   * d with room in scenario d. Licensed instances prefer hosts already licensed. Otherwise each
   * (class, domain) pair walks the class's domain-interleaved order with a cursor, which moves
   * past a host once it has no room left even for the class's smallest protected demand — so
   * every scenario fills the same hosts' reserves before opening new ones.
   */
  private findTarget(p: GroupPlan, d: number, primary: number): number {
    const memo = this.targetMemo.get(d);
    if (memo !== undefined) return memo;
    const t = this.searchTarget(p, d, primary);
    this.targetMemo.set(d, t);
    return t;
  }

  /**
   * The hosts a pool counts, one failure domain after another in turn: licensed failover targets
   * taken in counting order pile up in the first racks, and the scenarios of those very racks
   * must then reserve a second time elsewhere; spread over every rack, scenarios share them.
   * Rebuilt only when the pool counts another host.
   */
  private countedByDomain(pool: number): Int32Array {
    const counted = this.ledger.countedHosts(pool);
    const cached = this.countedOrder.get(pool);
    if (cached && cached.length === counted.length) return cached;
    const order = this.interleaveByDomain(counted);
    this.countedOrder.set(pool, order);
    return order;
  }

  /** Whether demand fits in t's existing reserve for scenario d, with no reserve growth. */
  private fitsSlack(t: number, d: number, demand: Amounts): boolean {
    const load = this.scenarioLoad[t]?.get(d);
    return (
      (load ? (load[0] as number) : 0) + demand.cpu <= this.resCpu[t]! &&
      (load ? (load[1] as number) : 0) + demand.memory <= this.resMem[t]! &&
      (load ? (load[2] as number) : 0) + demand.disk <= this.resDisk[t]!
    );
  }

  private slackKey(t: number, d: number): number {
    const load = this.scenarioLoad[t]?.get(d);
    const mem = this.resMem[t]! - (load ? (load[1] as number) : 0);
    const cpu = (this.resCpu[t]! - (load ? (load[0] as number) : 0)) * this.cpuToMem;
    return Math.min(mem, cpu);
  }

  /** How much t's reserve would grow (MiB-equivalents) to take demand in scenario d. */
  private growth(t: number, d: number, demand: Amounts): number {
    const load = this.scenarioLoad[t]?.get(d);
    const c = (load ? (load[0] as number) : 0) + demand.cpu - this.resCpu[t]!;
    const m = (load ? (load[1] as number) : 0) + demand.memory - this.resMem[t]!;
    const k = (load ? (load[2] as number) : 0) + demand.disk - this.resDisk[t]!;
    return Math.max(0, m) + Math.max(0, c) * this.cpuToMem + Math.max(0, k) * this.diskToMem;
  }

  private updateSlack(t: number, d: number): void {
    const index = this.slack?.[d];
    if (!index) return;
    const key = this.slackKey(t, d);
    if (key >= 1) index.set(t, key);
    else index.remove(t);
  }

  private searchTarget(p: GroupPlan, d: number, primary: number): number {
    const demand = p.demand;
    const preferred = this.preferredTarget;
    if (
      preferred >= 0 &&
      p.cls.mask[preferred] &&
      this.domainOf[preferred] !== d &&
      this.fitsScenario(preferred, d, demand)
    ) {
      return preferred;
    }
    for (const pool of p.coverPools) {
      let grow = -1;
      for (const t of this.countedByDomain(pool)) {
        if (t === primary || !p.cls.mask[t] || this.domainOf[t] === d) continue;
        if (this.fitsSlack(t, d, demand)) return t;
        if (grow < 0 && this.fitsScenario(t, d, demand)) grow = t;
      }
      if (grow >= 0) return grow;
    }
    const slack = this.slack?.[d];
    if (slack) {
      const inSlack = slack.ascending(
        p.keyBound,
        (t) => p.cls.mask[t] === 1 && this.domainOf[t] !== d && this.fitsSlack(t, d, demand),
      );
      if (inSlack >= 0) return inSlack;
      // No reserve holds it whole: grow the one that needs to grow least (often in one resource
      // only), among the reserves with the most slack for d.
      let best = -1;
      let bestGrowth = Number.POSITIVE_INFINITY;
      let visited = 0;
      slack.descending(1, (t) => {
        if (p.cls.mask[t] === 1 && this.domainOf[t] !== d && this.fitsScenario(t, d, demand)) {
          const growth = this.growth(t, d, demand);
          if (growth < bestGrowth) {
            best = t;
            bestGrowth = growth;
          }
        }
        return ++visited >= GROWTH_CANDIDATES;
      });
      const fresh = demand.memory + demand.cpu * this.cpuToMem + demand.disk * this.diskToMem;
      if (best >= 0 && bestGrowth < fresh) return best;
    }
    const order = p.cls.failoverOrder;
    const key = p.cls.id * this.domainCount + d;
    let position = this.cursors.get(key) ?? 0;
    let moving = true;
    for (let i = position; i < order.length; i++) {
      const t = order[i] as number;
      if (this.domainOf[t] === d) {
        if (moving) position = i + 1;
        continue;
      }
      if (this.fitsScenario(t, d, demand)) {
        this.cursors.set(key, position);
        return t;
      }
      if (moving && !this.fitsScenario(t, d, p.cls.minDemand)) position = i + 1;
      else moving = false;
    }
    this.cursors.set(key, position);
    return -1;
  }

  private commit(p: GroupPlan, i: number, h: number, target: number): void {
    const d = p.demand;
    this.usedCpu[h] = this.usedCpu[h]! + d.cpu;
    this.usedMem[h] = this.usedMem[h]! + d.memory;
    this.usedDisk[h] = this.usedDisk[h]! + d.disk;
    const present = this.groupsOn[h] as Map<number, number>;
    present.set(p.g, (present.get(p.g) ?? 0) + 1);
    if (p.spread) {
      const v = p.spread.valueAt[h] as number;
      p.spread.counts[v] = (p.spread.counts[v] as number) + 1;
      let min = Number.POSITIVE_INFINITY;
      for (const c of p.spread.counts) if (c < min) min = c;
      p.spread.min = min;
    }
    for (const pool of p.pools) this.ledger.addPrimary(pool, h, p.group.resources);
    for (const pool of p.hostPools) this.refreshZeroCost(pool, h);
    p.hostOf[i] = h;
    this.updateKey(h);
    if (target >= 0) {
      const domain = this.domainOf[h] as number;
      let loads = this.scenarioLoad[target];
      if (!loads) {
        loads = new Map();
        this.scenarioLoad[target] = loads;
      }
      let load = loads.get(domain);
      if (!load) {
        load = new Float64Array(3);
        loads.set(domain, load);
      }
      load[0] = (load[0] as number) + d.cpu;
      load[1] = (load[1] as number) + d.memory;
      load[2] = (load[2] as number) + d.disk;
      const grew =
        (load[0] as number) > this.resCpu[target]! ||
        (load[1] as number) > this.resMem[target]! ||
        (load[2] as number) > this.resDisk[target]!;
      this.resCpu[target] = Math.max(this.resCpu[target]!, load[0] as number);
      this.resMem[target] = Math.max(this.resMem[target]!, load[1] as number);
      this.resDisk[target] = Math.max(this.resDisk[target]!, load[2] as number);
      if (grew) {
        // A larger reserve is more slack for every other scenario.
        for (let other = 0; other < (this.slack?.length ?? 0); other++) {
          if (other !== this.domainOf[target]) this.updateSlack(target, other);
        }
      } else {
        this.updateSlack(target, domain);
      }
      for (const pool of p.coverPools) {
        this.ledger.addFailover(pool, target, domain);
        this.refreshZeroCost(pool, target);
      }
      p.targetOf[i] = target;
      this.updateKey(target);
    }
  }

  /** Effective free capacity in MiB-equivalents: what a host can still take, in one number. */
  private free(h: number): number {
    const freeMem = this.capMem[h]! - this.usedMem[h]! - this.resMem[h]!;
    const freeCpu = (this.capCpu[h]! - this.usedCpu[h]! - this.resCpu[h]!) * this.cpuToMem;
    return Math.max(0, Math.min(freeMem, freeCpu));
  }

  /** The FitIndex key: free capacity, with empty hosts above EMPTY (see there). */
  private key(h: number): number {
    const free = this.free(h);
    const empty =
      this.usedMem[h] === 0 &&
      this.usedCpu[h] === 0 &&
      this.resMem[h] === 0 &&
      this.resCpu[h] === 0;
    return empty ? EMPTY + Math.min(free, EMPTY - 1) : Math.min(free, EMPTY - 1);
  }

  private keyAfter(p: GroupPlan, h: number): number {
    return Math.max(0, this.free(h) - p.keyBound);
  }

  private refreshZeroCost(pool: number, h: number): void {
    const index = this.zeroCost[pool];
    if (!index) return;
    const zero =
      this.ledger.isCounted(pool, h) && this.ledger.primaryDelta(pool, h, { vcpus: 1 }) === 0;
    if (zero === index.has(h)) return;
    const indexes = this.indexesOf[h] as FitIndex[];
    const bySurplus = this.zeroSurplus[pool];
    const surplusIndexes = this.surplusOf[h] as FitIndex[];
    if (zero) {
      index.set(h, this.key(h));
      indexes.push(index);
      if (bySurplus) {
        bySurplus.set(h, SURPLUS_ZERO + this.surplus(h));
        surplusIndexes.push(bySurplus);
      }
    } else {
      index.remove(h);
      indexes.splice(indexes.indexOf(index), 1);
      if (bySurplus) {
        bySurplus.remove(h);
        surplusIndexes.splice(surplusIndexes.indexOf(bySurplus), 1);
      }
    }
  }

  private updateKey(h: number): void {
    const key = this.key(h);
    for (const index of this.indexesOf[h] as FitIndex[]) index.set(h, key);
    const surplusIndexes = this.surplusOf[h] as FitIndex[];
    if (surplusIndexes.length > 0) {
      const surplus = SURPLUS_ZERO + this.surplus(h);
      for (const index of surplusIndexes) index.set(h, surplus);
    }
  }

  /**
   * What h has free of the resource that does not run out first, beyond what its free binding
   * resource needs at the fillers' ratio, in MiB(-equivalents): ≥ 0 when h is fillable.
   */
  private surplus(h: number): number {
    const fill = this.fill as { cpuBinds: boolean; ratio: number };
    const freeCpu = this.capCpu[h]! - this.usedCpu[h]! - this.resCpu[h]!;
    const freeMem = this.capMem[h]! - this.usedMem[h]! - this.resMem[h]!;
    return fill.cpuBinds ? freeMem - fill.ratio * freeCpu : fill.ratio * freeCpu - freeMem;
  }

  /** How much of the surplus an instance of p takes. */
  private surplusTaken(p: GroupPlan): number {
    const fill = this.fill as { cpuBinds: boolean; ratio: number };
    return fill.cpuBinds
      ? p.demand.memory - fill.ratio * p.demand.cpu
      : fill.ratio * p.demand.cpu - p.demand.memory;
  }

  private licenseUnits(p: GroupPlan, h: number): number {
    let units = 0;
    for (const pool of p.pools) units += this.ledger.primaryDelta(pool, h, p.group.resources);
    return units;
  }

  // --- 4. report and explain ---------------------------------------------------------------

  /** The first check that rules host h out for the group, static or dynamic; null if none. */
  private reasonFor(p: GroupPlan, h: number): string | null {
    const host = this.hosts[h] as Host;
    for (const check of STATIC_CHECKS) {
      const verdict = check.check(host, p.group, p.image);
      if (!verdict.ok) return verdict.reason;
    }
    return this.dynamicReason(p, h);
  }

  private reasonsAcrossHosts(p: GroupPlan): Record<string, number> {
    const counts: Record<string, number> = {};
    for (let h = 0; h < this.H; h++) {
      const reason = this.reasonFor(p, h) ?? 'not-chosen';
      counts[reason] = (counts[reason] ?? 0) + 1;
    }
    if (this.H === 0) counts['no-hosts'] = 1;
    return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  private evaluateAll(p: GroupPlan, name: string, kept: boolean): Explanation {
    const hosts: HostVerdict[] = [];
    for (let h = 0; h < this.H; h++) {
      const reason = this.reasonFor(p, h);
      hosts.push({
        host: (this.hosts[h] as Host).name,
        ok: reason === null,
        reason,
        freeAfter: reason === null ? Math.round(this.keyAfter(p, h)) : null,
        licenseUnits: reason === null ? this.licenseUnits(p, h) : null,
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

  private markChosen(h: number): void {
    if (!this.explanation) return;
    const hosts = this.explanation.hosts.map((v, i) => (i === h ? { ...v, chosen: true } : v));
    this.explanation = { ...this.explanation, hosts };
  }

  private report(unplaceable: Unplaceable[]): Placement {
    const placements: PlacementEntry[] = [];
    let protectedCount = 0;
    let covered = 0;
    for (const p of this.plans) {
      for (let i = 0; i < p.group.replicas; i++) {
        if (p.isProtected) protectedCount++;
        const h = p.hostOf[i] as number;
        if (h < 0) continue;
        const t = p.targetOf[i] as number;
        if (t >= 0) covered++;
        placements.push({
          instance: replicaName(p.group.name, i),
          group: p.group.name,
          host: (this.hosts[h] as Host).name,
          failoverHost: t >= 0 ? (this.hosts[t] as Host).name : null,
        });
      }
    }
    const groupOrder = new Map(this.plans.map((p) => [p.group.name, p.g]));
    unplaceable.sort(
      (a, b) =>
        (groupOrder.get(a.group) as number) - (groupOrder.get(b.group) as number) ||
        indexOf(a.instance) - indexOf(b.instance),
    );
    return {
      formatVersion: PLACEMENT_FORMAT_VERSION,
      placements,
      hosts: this.hosts.map((host, h) => ({
        name: host.name,
        used: {
          vcpus: this.usedCpu[h]! / 1000,
          memoryMiB: this.usedMem[h]!,
          diskGiB: this.usedDisk[h]!,
        },
        reserved: {
          vcpus: this.resCpu[h]! / 1000,
          memoryMiB: this.resMem[h]!,
          diskGiB: this.resDisk[h]!,
        },
        licenses: this.ledger.poolsCounting(h),
      })),
      licenses: this.fleet.licenses.map((pool, i) => ({
        pool: pool.name,
        metric: pool.metric,
        entitlement: pool.entitlement,
        used: this.ledger.used(i),
      })),
      unplaceable,
      failover: {
        tolerate: this.tolerate,
        domain: this.fleet.failover.domain,
        protected: protectedCount,
        covered,
      },
    };
  }
}

/** How constrained a group is: how many of its placement rules narrow the hosts it may use. */
function constraintsOf(p: GroupPlan): number {
  return (
    (p.spread ? 1 : 0) +
    (p.avoid.length > 0 ? 1 : 0) +
    (Object.keys(p.group.placement.requireLabels).length > 0 ? 1 : 0) +
    (p.isProtected ? 1 : 0) +
    (p.hostPools.length > 0 ? 1 : 0)
  );
}

/** The replicas not yet placed of a list of groups, group after group. */
class ReplicaQueue {
  private g = 0;
  private i = -1;

  constructor(private readonly plans: readonly GroupPlan[]) {
    this.advance();
  }

  get done(): boolean {
    return this.g >= this.plans.length;
  }

  /** The group of the next replica. */
  get head(): GroupPlan | undefined {
    return this.plans[this.g];
  }

  next(): readonly [GroupPlan, number] | undefined {
    if (this.done) return undefined;
    const item = [this.plans[this.g] as GroupPlan, this.i] as const;
    this.advance();
    return item;
  }

  private advance(): void {
    for (; this.g < this.plans.length; this.g++, this.i = -1) {
      const p = this.plans[this.g] as GroupPlan;
      for (this.i++; this.i < p.group.replicas; this.i++) {
        if ((p.hostOf[this.i] as number) < 0) return;
      }
    }
  }
}

function indexOf(instance: string): number {
  return Number(instance.slice(instance.lastIndexOf('-') + 1));
}

/**
 * How many observed replicas each spread value may keep. The group's end state is balanced: with
 * N replicas over V values each value holds q = ⌊N/V⌋ or q + 1, and r = N mod V of them hold
 * q + 1. Every value keeps up to q, and the r values observed with the most replicas keep q + 1;
 * placing the rest where the count is lowest then ends balanced (skew ≤ 1). Any subset of a
 * balanced placement is kept whole — an apply that stopped halfway resumes without moving what it
 * created — and a new value (a rack added) draws only what balance needs from the others. (The
 * rule it replaces, the observed minimum + 1, kept one replica per value whenever one value had
 * none yet: a half-done apply re-planned with moves, swaps among them.)
 */
export function keepCapsOf(observedCounts: Int32Array, replicas: number): Int32Array {
  const values = observedCounts.length;
  const caps = new Int32Array(values);
  if (values === 0) return caps;
  const q = Math.floor(replicas / values);
  let r = replicas % values;
  caps.fill(q);
  const byCount = [...observedCounts.keys()].sort(
    (a, b) => (observedCounts[b] as number) - (observedCounts[a] as number) || a - b,
  );
  for (const v of byCount) {
    if (r === 0 || (observedCounts[v] as number) <= q) break;
    caps[v] = q + 1;
    r--;
  }
  return caps;
}
