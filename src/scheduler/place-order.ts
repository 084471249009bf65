// The order of the place stage (stack.ts, stage 3): the replicas still to place, as one sequence.
import type { GroupPlan } from './group-plan.js';

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
export function* placementSequence(
  plans: readonly GroupPlan[],
): Generator<readonly [GroupPlan, number]> {
  const all = placementOrder(plans);
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
function placementOrder(plans: readonly GroupPlan[]): GroupPlan[] {
  // Groups that draw on host-metric pools go first: they concentrate on few licensed hosts
  // before anything else takes the room there.
  const licensed = (p: GroupPlan) => (p.hostPools.length > 0 ? 1 : 0);
  return [...plans].sort(
    (a, b) =>
      licensed(b) - licensed(a) ||
      constraintsOf(b) - constraintsOf(a) ||
      b.keyBound - a.keyBound ||
      b.demand.memory - a.demand.memory ||
      a.g - b.g,
  );
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
