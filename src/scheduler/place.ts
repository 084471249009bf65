// Stage 3 of the stack (stack.ts), place: every replica not kept, in the order place-order.ts
// gives, on the host its class's FitIndex walk finds first among those that pass the checks —
// or, for groups on host-metric license pools, where the license scorer says.
import { replicaName } from '../model/fleet.js';
import type { Explanation, Unplaceable } from '../model/placement.js';
import { type Choice, firstFit } from './choice.js';
import type { GroupPlan } from './group-plan.js';
import { placementSequence } from './place-order.js';
import { EMPTY, type PlacementState } from './placement-state.js';
import { evaluateAll, markChosen, reasonsAcrossHosts } from './report.js';

/** The instance `explain` asks about, and what it found at that instance's turn. */
export interface Explaining {
  readonly instance: string | undefined;
  explanation: Explanation | undefined;
}

/** Places every replica not yet placed; returns those that could not be. */
export function placeAll(s: PlacementState, explaining: Explaining): Unplaceable[] {
  const unplaceable: Unplaceable[] = [];
  for (const [p, i] of placementSequence(s.plans)) {
    const name = replicaName(p.group.name, i);
    const explain = explaining.instance === name;
    s.reserve.newTurn();
    if (explain) explaining.explanation = evaluateAll(s, p, name, false);
    const choice = p.failed ? undefined : choose(s, p);
    if (!choice) {
      p.failed ??= reasonsAcrossHosts(s, p);
      unplaceable.push({ instance: name, group: p.group.name, reasons: p.failed });
      continue;
    }
    s.commit(p, i, choice);
    if (explain && explaining.explanation) {
      explaining.explanation = markChosen(explaining.explanation, choice.host);
    }
  }
  return unplaceable;
}

/**
 * The host for the next replica of p and its failover target, or undefined: binpack takes the
 * best fit (the smallest effective free capacity that fits, hosts in use before empty ones),
 * spread the worst fit; licensed groups go where the license scorer says.
 */
function choose(s: PlacementState, p: GroupPlan): Choice | undefined {
  if (p.hostPools.length > 0) return s.licensing.choose(p);
  const index = p.cls.index;
  if (p.group.placement.strategy === 'spread') {
    return firstFit((accept) => index.descending(p.keyBound, accept), s, p);
  }
  return firstFit(
    (accept) => {
      const open = index.ascending(p.keyBound, accept, EMPTY);
      return open >= 0 ? open : index.descending(EMPTY, accept);
    },
    s,
    p,
  );
}
