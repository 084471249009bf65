// What the scheduler knows while it places: every host's capacity, use and standby reserve, the
// groups on it, the FitIndexes it is in, the license ledger, the group plans — and `commit`, the
// one way a placement changes it (an instance on a host, with its failover target). Built by the
// classes stage (stack.ts); read by the checks (checks/); committed to by the keep and place
// stages. (The failover reserve's search keeps its own cursors and a per-turn memo as it looks
// for targets: failover-reserve.ts.)
import { LicenseLedger } from '../licensing/license-ledger.js';
import { VfleetError } from '../model/errors.js';
import type { Fleet, Host } from '../model/fleet.js';
import { domainNumbers } from '../model/fleet.js';
import { allocatableOf, hostAmounts } from './capacity.js';
import type { Choice } from './choice.js';
import { FailoverReserve } from './failover-reserve.js';
import { FailoverScenarios } from './failover-scenarios.js';
import { type FitIndex, MAX_KEY } from './fit-index.js';
import { type GroupPlan, openingOrder, type PlanningContext, planGroups } from './group-plan.js';
import { LicenseScorer } from './license-scorer.js';

/**
 * Keys from here up belong to empty hosts, ordered by their capacity: binpack fills the hosts
 * already in use (best fit) and only then opens a new one, the largest first, so a fleet of
 * mixed host sizes ends up on as few hosts as it can.
 */
export const EMPTY = (MAX_KEY + 1) / 2;

export class PlacementState implements PlanningContext {
  readonly fleet: Fleet;
  readonly hosts: readonly Host[];
  readonly H: number;
  readonly capCpu: Float64Array;
  readonly capMem: Float64Array;
  readonly capDisk: Float64Array;
  readonly usedCpu: Float64Array;
  readonly usedMem: Float64Array;
  readonly usedDisk: Float64Array;
  /** The standby reserves (the failover scenarios' own arrays). */
  readonly resCpu: Float64Array;
  readonly resMem: Float64Array;
  readonly resDisk: Float64Array;
  /** MiB per milli-vCPU of the whole fleet: makes CPU and memory comparable in one key. */
  readonly cpuToMem: number;
  /** MiB per GiB of disk of the whole fleet, for weighing reserve growth. */
  readonly diskToMem: number;
  readonly tolerate: number;
  readonly domainOf: Int32Array;
  readonly domainCount: number;
  /** Per host: group number → replicas of it there. */
  readonly groupsOn: Array<Map<number, number>>;
  readonly indexesOf: FitIndex[][];
  readonly ledger: LicenseLedger;
  readonly scenarios: FailoverScenarios;
  readonly reserve: FailoverReserve;
  readonly plans: readonly GroupPlan[];
  readonly licensing: LicenseScorer;
  /** The keep stage is running: spread-skew lets each value keep up to its cap (keep.ts). */
  keeping = false;
  /** Per host: the classes' FitIndexes it is in (indexesOf also holds the license scorer's). */
  private readonly classIndexesOf: FitIndex[][];
  /** Per host: its key in the class indexes, as FitIndex keeps it (clamped, whole). */
  private readonly classKey: Int32Array;
  /** Per host: when its class key last changed while deferred (0: it did not), and the count. */
  private readonly movedAt: Int32Array;
  private moves = 0;
  private deferring = false;

  constructor(fleet: Fleet) {
    if (fleet.failover.tolerate > 1) {
      throw new VfleetError(
        'unsupported-tolerance',
        `failover.tolerate ${fleet.failover.tolerate} is not supported; vfleet reserves for one failed ${fleet.failover.domain} at a time (see docs/scheduler.md)`,
      );
    }
    this.fleet = fleet;
    this.hosts = fleet.hosts;
    const H = fleet.hosts.length;
    this.H = H;
    const cap = allocatableOf(fleet.hosts);
    const used = hostAmounts(H);
    this.capCpu = cap.cpu;
    this.capMem = cap.memory;
    this.capDisk = cap.disk;
    this.usedCpu = used.cpu;
    this.usedMem = used.memory;
    this.usedDisk = used.disk;
    let totalCpu = 0;
    let totalMem = 0;
    let totalDisk = 0;
    for (let h = 0; h < H; h++) {
      totalCpu += this.capCpu[h]!;
      totalMem += this.capMem[h]!;
      totalDisk += this.capDisk[h]!;
    }
    this.cpuToMem = totalCpu > 0 ? totalMem / totalCpu : 1;
    this.diskToMem = totalDisk > 0 ? totalMem / totalDisk : 1;
    this.tolerate = fleet.failover.tolerate;
    const domains = domainNumbers(fleet);
    this.domainOf = Int32Array.from(fleet.hosts, (host) => domains.get(host.name) as number);
    this.domainCount = new Set(domains.values()).size;
    this.scenarios = new FailoverScenarios(cap, used);
    this.resCpu = this.scenarios.reserveCpu;
    this.resMem = this.scenarios.reserveMem;
    this.resDisk = this.scenarios.reserveDisk;
    this.reserve = new FailoverReserve(this, this.scenarios);
    this.groupsOn = Array.from({ length: H }, () => new Map());
    this.indexesOf = Array.from({ length: H }, () => []);
    this.ledger = new LicenseLedger(fleet.licenses, fleet.hosts);
    this.plans = planGroups(this);
    this.classIndexesOf = this.indexesOf.map((indexes) => [...indexes]);
    this.classKey = new Int32Array(H).fill(-1);
    this.movedAt = new Int32Array(H);
    const opening = openingOrder(this);
    for (let i = opening.length - 1; i >= 0; i--) this.setKey(opening[i] as number);
    this.licensing = new LicenseScorer(this, totalCpu, totalMem);
  }

  /** Effective free capacity in MiB-equivalents: what a host can still take, in one number. */
  free(h: number): number {
    const freeMem = this.capMem[h]! - this.usedMem[h]! - this.resMem[h]!;
    const freeCpu = (this.capCpu[h]! - this.usedCpu[h]! - this.resCpu[h]!) * this.cpuToMem;
    return Math.max(0, Math.min(freeMem, freeCpu));
  }

  /** The FitIndex key: free capacity, with empty hosts above EMPTY (see there). */
  key(h: number): number {
    const free = this.free(h);
    const empty =
      this.usedMem[h] === 0 &&
      this.usedCpu[h] === 0 &&
      this.resMem[h] === 0 &&
      this.resCpu[h] === 0;
    return empty ? EMPTY + Math.min(free, EMPTY - 1) : Math.min(free, EMPTY - 1);
  }

  /** The key h would have after taking an instance of p, at least (for `explain`). */
  keyAfter(p: GroupPlan, h: number): number {
    return Math.max(0, this.free(h) - p.keyBound);
  }

  /** An instance of p (replica i) runs on the chosen host, and fails over to its target. */
  commit(p: GroupPlan, i: number, { host: h, target }: Choice): void {
    this.commitHost(p, i, h);
    if (target >= 0) this.commitTarget(p, i, h, target);
  }

  /** An instance of p (replica i) runs on h: its use, its group's presence, its licenses. */
  commitHost(p: GroupPlan, i: number, h: number): void {
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
    for (const pool of p.hostPools) this.licensing.refreshZeroCost(pool, h);
    p.hostOf[i] = h;
    this.updateKey(h);
  }

  /** The instance of p (replica i) on h fails over to `target`: the standby reserve there. */
  commitTarget(p: GroupPlan, i: number, h: number, target: number): void {
    this.reserve.take(p, h, target);
    const domain = this.domainOf[h] as number;
    for (const pool of p.coverPools) {
      this.ledger.addFailover(pool, target, domain);
      this.licensing.refreshZeroCost(pool, target);
    }
    p.targetOf[i] = target;
    this.updateKey(target);
  }

  /** h's use or reserve changed: every index it is in learns its new key. */
  private updateKey(h: number): void {
    this.setKey(h);
    this.licensing.updateSurplus(h);
  }

  private setKey(h: number): void {
    const key = this.key(h);
    const indexes = this.indexesOf[h] as FitIndex[];
    if (!this.deferring) {
      for (const index of indexes) index.set(h, key);
      this.classKey[h] = wholeKey(key);
      return;
    }
    // The license scorer's indexes now; the classes' when the deferral ends.
    const classes = this.classIndexesOf[h] as FitIndex[];
    for (let i = classes.length; i < indexes.length; i++) (indexes[i] as FitIndex).set(h, key);
    const whole = wholeKey(key);
    if (whole === this.classKey[h]) return;
    this.classKey[h] = whole;
    this.movedAt[h] = ++this.moves;
  }

  /**
   * Until flushClassKeys, the classes' FitIndexes learn no new keys: nothing asks them anything
   * while observed instances are kept (the keep stage checks the hosts it is given; the failover
   * reserve has indexes of its own), and on 100,000 kept instances their updates were most of
   * the stage — half a million, where a thousand hosts end with a thousand keys.
   */
  deferClassKeys(): void {
    this.deferring = true;
  }

  /**
   * The classes' FitIndexes as the updates deferred would have left them, exactly: an update
   * that changes a host's key moves it to the head of its new key's bucket, so each bucket ends
   * with the hosts that moved into it, the last moved first, above the ones that never moved,
   * in their order. Replaying each moved host's last move, in the order of those moves, leaves
   * the same buckets (and the same walks of them, ties included).
   */
  flushClassKeys(): void {
    this.deferring = false;
    if (this.moves === 0) return;
    const order = new Int32Array(this.moves + 1).fill(-1);
    for (let h = 0; h < this.H; h++) {
      const at = this.movedAt[h] as number;
      if (at > 0) order[at] = h;
    }
    for (const h of order) {
      if (h < 0) continue;
      for (const index of this.classIndexesOf[h] as FitIndex[]) {
        index.moveToHead(h, this.classKey[h] as number);
      }
    }
    this.movedAt.fill(0);
    this.moves = 0;
  }
}

/** A key as FitIndex keeps it: clamped to 0…MAX_KEY, whole. */
function wholeKey(key: number): number {
  return key <= 0 ? 0 : key >= MAX_KEY ? MAX_KEY : Math.floor(key);
}
