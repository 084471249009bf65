// The license scorer: where an instance of a group drawing on a host-metric pool (Windows
// Datacenter, RHEL per socket pair…) goes, so that license units go furthest.
//
// A host where the instance adds no license units (licensed for Datacenter already, or with a
// free Standard slot) wins, best fit among them. Otherwise the instance must buy units, and
// buys where they go furthest, weighing the first LICENSE_CANDIDATES hosts that pass: for a
// pool whose licensing covers any number of instances (Datacenter, RHEL per socket pair), the
// lowest units per room left, roomiest first, since the room is what the units buy; for stacked
// rights (Standard: 2 instances per licensing), the fewest units, best fit first, since room
// beyond the stack buys nothing.
//
// Both prefer a host that stays fillable (see `fill`): licensed VMs are often heavy in one
// resource, and a licensed host full of them strands the other — vCPUs nothing else can use.
// So the order is: free and fillable (best fit in surplus), bought and fillable, free, bought.

import { isHostMetric } from '../licensing/license-units.js';
import type { LicensePool } from '../model/fleet.js';
import { type Choice, firstFit } from './choice.js';
import { FitIndex, MAX_KEY } from './fit-index.js';
import type { GroupPlan } from './group-plan.js';
import type { PlacementState } from './placement-state.js';
import { feasible } from './stack.js';

/** Hosts visited when looking for a fillable one to buy licenses on: a bound on work. */
const FILLABLE_CANDIDATES = 256;
/** Hosts weighed when an instance must buy license units: a bound on work; any choice fits. */
const LICENSE_CANDIDATES = 32;
/** Surplus keys are offset by this, so that negative surpluses (unfillable hosts) keep their order. */
const SURPLUS_ZERO = (MAX_KEY + 1) / 2;

export class LicenseScorer {
  private readonly state: PlacementState;
  /**
   * Which resource the fleet runs out of first (demand over capacity, all hosts), and the memory
   * per vCPU of the groups that fill hosts after the licensed ones; undefined when none do.
   */
  private readonly fill: { cpuBinds: boolean; ratio: number } | undefined;
  /** Per host-metric pool: counted hosts where one more licensed instance costs no units. */
  private readonly zeroCost: Array<FitIndex | undefined>;
  /**
   * The same hosts keyed by their surplus (see `surplus`), when `fill` is known: best fit in
   * surplus puts a licensed instance where its extra memory (or vCPUs) leaves the host fillable.
   */
  private readonly zeroSurplus: Array<FitIndex | undefined>;
  /** Per host: the surplus indexes it is in. */
  private readonly surplusOf: FitIndex[][];

  constructor(state: PlacementState, capCpu: number, capMem: number) {
    this.state = state;
    const { fleet, H } = state;
    this.zeroCost = fleet.licenses.map((pool) =>
      isHostMetric(pool) ? new FitIndex(H) : undefined,
    );
    this.surplusOf = Array.from({ length: H }, () => []);
    this.fill = fillOf(state.plans, capCpu, capMem);
    this.zeroSurplus = fleet.licenses.map((pool) =>
      isHostMetric(pool) && this.fill ? new FitIndex(H) : undefined,
    );
    fleet.licenses.forEach((_, pool) => {
      for (const h of state.ledger.countedHosts(pool)) this.refreshZeroCost(pool, h);
    });
  }

  /** A host (and failover target) for an instance of p, which draws on a host-metric pool. */
  choose(p: GroupPlan): Choice | undefined {
    if (this.fill === undefined) return this.licensedHost(p, undefined, Number.POSITIVE_INFINITY);
    const taken = this.surplusTaken(p);
    if (p.group.placement.strategy !== 'spread') {
      const bySurplus = this.zeroSurplus[p.hostPools[0] as number] as FitIndex;
      const free = firstFit(
        (accept) => bySurplus.ascending(SURPLUS_ZERO + taken, accept),
        this.state,
        p,
        (h) => p.cls.mask[h] === 1,
      );
      if (free) return free;
    }
    const fillable = (h: number) => this.surplus(h) >= taken;
    return (
      this.licensedHost(p, fillable, FILLABLE_CANDIDATES) ??
      this.licensedHost(p, undefined, Number.POSITIVE_INFINITY)
    );
  }

  /** License units an instance of p adds on h. */
  licenseUnits(p: GroupPlan, h: number): number {
    let units = 0;
    for (const pool of p.pools) units += this.state.ledger.primaryDelta(pool, h, p.group.resources);
    return units;
  }

  /** The ledger changed on h for this pool: h joins or leaves the pool's zero-cost hosts. */
  refreshZeroCost(pool: number, h: number): void {
    const index = this.zeroCost[pool];
    if (!index) return;
    const { ledger } = this.state;
    const zero = ledger.isCounted(pool, h) && ledger.primaryDelta(pool, h, { vcpus: 1 }) === 0;
    if (zero === index.has(h)) return;
    const indexes = this.state.indexesOf[h] as FitIndex[];
    const bySurplus = this.zeroSurplus[pool];
    const surplusIndexes = this.surplusOf[h] as FitIndex[];
    if (zero) {
      index.set(h, this.state.key(h));
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

  /** h's use or reserve changed: the surplus indexes it is in learn its new surplus. */
  updateSurplus(h: number): void {
    const surplusIndexes = this.surplusOf[h] as FitIndex[];
    if (surplusIndexes.length > 0) {
      const surplus = SURPLUS_ZERO + this.surplus(h);
      for (const index of surplusIndexes) index.set(h, surplus);
    }
  }

  /**
   * A free host, else the best one to buy units on among the first `visits` hosts weighed;
   * only hosts `filter` lets through, when given.
   */
  private licensedHost(
    p: GroupPlan,
    filter: ((h: number) => boolean) | undefined,
    visits: number,
  ): Choice | undefined {
    const pool = p.hostPools[0] as number;
    const zero = this.zeroCost[pool] as FitIndex;
    const spread = p.group.placement.strategy === 'spread';
    const free = firstFit(
      (accept) =>
        spread ? zero.descending(p.keyBound, accept) : zero.ascending(p.keyBound, accept),
      this.state,
      p,
      (h) => p.cls.mask[h] === 1 && (filter === undefined || filter(h)),
    );
    if (free) return free;
    const stacked = (this.state.fleet.licenses[pool] as LicensePool).instancesPerUnit !== undefined;
    let best: Choice | undefined;
    let bestCost = Number.POSITIVE_INFINITY;
    let seen = 0;
    let visited = 0;
    const weigh = (h: number) => {
      const f = filter === undefined || filter(h) ? feasible(this.state, p, h) : undefined;
      if (!f?.ok) return ++visited >= visits;
      const units = this.licenseUnits(p, h);
      const cost = stacked ? units : units / Math.max(1, this.state.free(h));
      if (cost < bestCost) {
        best = { host: h, target: f.target };
        bestCost = cost;
      }
      return ++seen >= LICENSE_CANDIDATES || ++visited >= visits;
    };
    if (stacked) p.cls.index.ascending(p.keyBound, weigh);
    else p.cls.index.descending(p.keyBound, weigh);
    return best;
  }

  /**
   * What h has free of the resource that does not run out first, beyond what its free binding
   * resource needs at the fillers' ratio, in MiB(-equivalents): ≥ 0 when h is fillable.
   */
  private surplus(h: number): number {
    const fill = this.fill as { cpuBinds: boolean; ratio: number };
    const s = this.state;
    const freeCpu = s.capCpu[h]! - s.usedCpu[h]! - s.resCpu[h]!;
    const freeMem = s.capMem[h]! - s.usedMem[h]! - s.resMem[h]!;
    return fill.cpuBinds ? freeMem - fill.ratio * freeCpu : fill.ratio * freeCpu - freeMem;
  }

  /** How much of the surplus an instance of p takes. */
  private surplusTaken(p: GroupPlan): number {
    const fill = this.fill as { cpuBinds: boolean; ratio: number };
    return fill.cpuBinds
      ? p.demand.memory - fill.ratio * p.demand.cpu
      : fill.ratio * p.demand.cpu - p.demand.memory;
  }
}

function fillOf(
  plans: readonly GroupPlan[],
  capCpu: number,
  capMem: number,
): { cpuBinds: boolean; ratio: number } | undefined {
  let cpu = 0;
  let memory = 0;
  let fillCpu = 0;
  let fillMem = 0;
  for (const p of plans) {
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
