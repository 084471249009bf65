// The standby reserve the scheduler keeps for failover (tolerate 1): where a protected instance
// restarts if its failure domain fails, and the capacity held for that on the target.
//
// When a protected instance is placed in domain d, it gets a target host outside d that can take
// it in scenario d (failover-scenarios.ts: used + load[d] + demand ≤ capacity). The target's
// reserve is the per-resource maximum of its loads over scenarios — scenarios share reserves,
// since only one happens at a time — and normal placements only use capacity − used − reserve
// (checks/free-capacity.ts), so no placement can break a scenario.
//
// Which target, in order: the one observed for a kept instance if it still works; for a licensed
// instance whose pool covers failover, a host the pool already counts; then a reserve with
// enough slack for d (so every scenario fills the same reserves before any grows); then the
// reserve that grows least; last, a cursor over the class's hosts interleaved by domain.
import type { Amounts } from './capacity.js';
import type { FailoverScenarios } from './failover-scenarios.js';
import { FitIndex } from './fit-index.js';
import { type GroupPlan, interleave } from './group-plan.js';
import type { PlacementState } from './placement-state.js';

/** Above this many failure domains (domain: host on a large fleet), reserves grow by cursor only. */
const MAX_SLACK_DOMAINS = 64;
/** Reserves weighed when one must grow: a bound on work, not on correctness (any choice fits). */
const GROWTH_CANDIDATES = 64;

export class FailoverReserve {
  private readonly state: PlacementState;
  private readonly scenarios: FailoverScenarios;
  private readonly domainOf: Int32Array;
  private readonly domainCount: number;
  private readonly cursors = new Map<number, number>();
  /** Per pool: its counted hosts interleaved by failure domain (see countedByDomain). */
  private readonly countedOrder = new Map<number, Int32Array>();
  /**
   * Per failure domain d (when there are few enough domains): hosts keyed by their slack for
   * scenario d — reserve minus what d's failure already lands there. A protected instance of d
   * first goes into existing slack, so every scenario fills the same reserves before any grows.
   */
  private readonly slack: FitIndex[] | undefined;
  /**
   * Targets found during one instance's turn, by domain: nothing is placed meanwhile, so the
   * answer for a domain holds for every host of it. `memoTarget[d]` holds while `memoTurn[d]` is
   * the current turn; `newTurn` starts the next one (a counter, not a Map to clear: this runs
   * once per instance).
   */
  private readonly memoTarget: Int32Array;
  private readonly memoTurn: Int32Array;
  private turn = 1;

  constructor(state: PlacementState, scenarios: FailoverScenarios) {
    this.state = state;
    this.scenarios = scenarios;
    this.domainOf = state.domainOf;
    this.domainCount = state.domainCount;
    this.memoTarget = new Int32Array(this.domainCount);
    this.memoTurn = new Int32Array(this.domainCount);
    this.slack =
      state.tolerate > 0 && this.domainCount <= MAX_SLACK_DOMAINS
        ? Array.from({ length: this.domainCount }, () => new FitIndex(state.H, 22))
        : undefined;
  }

  /** An instance's turn begins: targets found for the one before no longer hold. */
  newTurn(): void {
    this.turn++;
  }

  /**
   * A failover target for an instance of `p` placed on `primary` in domain `d`, or -1;
   * `preferred` (or -1) is the one it was observed with, tried first.
   */
  findTarget(p: GroupPlan, d: number, primary: number, preferred: number): number {
    if (this.memoTurn[d] === this.turn) return this.memoTarget[d] as number;
    const t = this.searchTarget(p, d, primary, preferred);
    this.memoTarget[d] = t;
    this.memoTurn[d] = this.turn;
    return t;
  }

  /** An instance of `p` placed on h restarts on t if h's domain fails: t's reserve holds it. */
  take(p: GroupPlan, h: number, t: number): void {
    const domain = this.domainOf[h] as number;
    if (this.scenarios.land(t, domain, p.demand)) {
      // A larger reserve is more slack for every other scenario.
      for (let other = 0; other < (this.slack?.length ?? 0); other++) {
        if (other !== this.domainOf[t]) this.updateSlack(t, other);
      }
    } else {
      this.updateSlack(t, domain);
    }
  }

  private searchTarget(p: GroupPlan, d: number, primary: number, preferred: number): number {
    const demand = p.demand;
    const scenarios = this.scenarios;
    if (
      preferred >= 0 &&
      p.cls.mask[preferred] &&
      this.domainOf[preferred] !== d &&
      scenarios.fits(preferred, d, demand)
    ) {
      return preferred;
    }
    for (const pool of p.coverPools) {
      let grow = -1;
      for (const t of this.countedByDomain(pool)) {
        if (t === primary || !p.cls.mask[t] || this.domainOf[t] === d) continue;
        if (this.fitsSlack(t, d, demand)) return t;
        if (grow < 0 && scenarios.fits(t, d, demand)) grow = t;
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
        if (p.cls.mask[t] === 1 && this.domainOf[t] !== d && scenarios.fits(t, d, demand)) {
          const growth = this.growth(t, d, demand);
          if (growth < bestGrowth) {
            best = t;
            bestGrowth = growth;
          }
        }
        return ++visited >= GROWTH_CANDIDATES;
      });
      const { cpuToMem, diskToMem } = this.state;
      const fresh = demand.memory + demand.cpu * cpuToMem + demand.disk * diskToMem;
      if (best >= 0 && bestGrowth < fresh) return best;
    }
    return this.nextByCursor(p, d, demand);
  }

  /**
   * Each (class, domain) pair walks the class's domain-interleaved order with a cursor, which
   * moves past a host once it has no room left even for the class's smallest protected demand —
   * so every scenario fills the same hosts' reserves before opening new ones.
   */
  private nextByCursor(p: GroupPlan, d: number, demand: Amounts): number {
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
      if (this.scenarios.fits(t, d, demand)) {
        this.cursors.set(key, position);
        return t;
      }
      if (moving && !this.scenarios.fits(t, d, p.cls.minDemand)) position = i + 1;
      else moving = false;
    }
    this.cursors.set(key, position);
    return -1;
  }

  /**
   * The hosts a pool counts, one failure domain after another in turn: licensed failover targets
   * taken in counting order pile up in the first racks, and the scenarios of those very racks
   * must then reserve a second time elsewhere; spread over every rack, scenarios share them.
   * Rebuilt only when the pool counts another host.
   */
  private countedByDomain(pool: number): Int32Array {
    const counted = this.state.ledger.countedHosts(pool);
    const cached = this.countedOrder.get(pool);
    if (cached && cached.length === counted.length) return cached;
    const order = interleave(counted, (h) => this.domainOf[h] as number);
    this.countedOrder.set(pool, order);
    return order;
  }

  /** Whether demand fits in t's existing reserve for scenario d, with no reserve growth. */
  private fitsSlack(t: number, d: number, demand: Amounts): boolean {
    const load = this.scenarios.loadOn(t, d);
    const s = this.scenarios;
    return (
      (load ? (load[0] as number) : 0) + demand.cpu <= s.reserveCpu[t]! &&
      (load ? (load[1] as number) : 0) + demand.memory <= s.reserveMem[t]! &&
      (load ? (load[2] as number) : 0) + demand.disk <= s.reserveDisk[t]!
    );
  }

  /** How much t's reserve would grow (MiB-equivalents) to take demand in scenario d. */
  private growth(t: number, d: number, demand: Amounts): number {
    const load = this.scenarios.loadOn(t, d);
    const s = this.scenarios;
    const c = (load ? (load[0] as number) : 0) + demand.cpu - s.reserveCpu[t]!;
    const m = (load ? (load[1] as number) : 0) + demand.memory - s.reserveMem[t]!;
    const k = (load ? (load[2] as number) : 0) + demand.disk - s.reserveDisk[t]!;
    return (
      Math.max(0, m) + Math.max(0, c) * this.state.cpuToMem + Math.max(0, k) * this.state.diskToMem
    );
  }

  private updateSlack(t: number, d: number): void {
    const index = this.slack?.[d];
    if (!index) return;
    const load = this.scenarios.loadOn(t, d);
    const s = this.scenarios;
    const mem = s.reserveMem[t]! - (load ? (load[1] as number) : 0);
    const cpu = (s.reserveCpu[t]! - (load ? (load[0] as number) : 0)) * this.state.cpuToMem;
    const key = Math.min(mem, cpu);
    if (key >= 1) index.set(t, key);
    else index.remove(t);
  }
}
