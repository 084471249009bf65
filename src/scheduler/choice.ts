// A host for an instance and its failover target, chosen together: the checks find the target
// while they judge the host (checks/failover-target.ts), and it travels with the host to the
// commit (placement-state.ts) — nothing is left behind in the scheduler for the commit to read.
import type { GroupPlan } from './group-plan.js';
import type { PlacementState } from './placement-state.js';
import { feasible } from './stack.js';

export interface Choice {
  readonly host: number;
  /** -1: the instance needs none (it is not protected). */
  readonly target: number;
}

/**
 * Runs a FitIndex walk (`search`, which stops at the first host its `accept` takes) with the
 * dynamic checks for an instance of p as the judge, on the hosts `filter` lets through, and
 * returns the host it stopped at with the target the checks found for it; undefined if none
 * passed.
 */
export function firstFit(
  search: (accept: (h: number) => boolean) => number,
  s: PlacementState,
  p: GroupPlan,
  filter?: (h: number) => boolean,
): Choice | undefined {
  let target = -1;
  const host = search((h) => {
    if (filter !== undefined && !filter(h)) return false;
    const fit = feasible(s, p, h);
    if (fit.ok) target = fit.target;
    return fit.ok;
  });
  return host >= 0 ? { host, target } : undefined;
}
