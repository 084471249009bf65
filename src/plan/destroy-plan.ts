// The plan of `vfleet destroy` (Terraform's destroy mode): every instance the observed state
// holds — recorded in the state or reported by its host — destroyed, nothing placed. It is
// makePlan's diff against an empty placement, so its destroys are drafted, ordered, fenced and
// counted exactly as an apply's are, and its licenses go from what runs now to nothing. Pure.
import type { Fleet } from '../model/fleet.js';
import type { ObservedState } from '../model/observed.js';
import { PLACEMENT_FORMAT_VERSION, type Placement } from '../model/placement.js';
import type { Plan } from '../model/plan.js';
import { makePlan, type PlanMeta } from './make-plan.js';

export const DESTROY_REASON = 'destroy requested';

export function makeDestroyPlan(fleet: Fleet, observed: ObservedState, meta: PlanMeta): Plan {
  const nothingPlaced: Placement = {
    formatVersion: PLACEMENT_FORMAT_VERSION,
    placements: [],
    hosts: [],
    licenses: [],
    unplaceable: [],
    failover: {
      tolerate: fleet.failover.tolerate,
      domain: fleet.failover.domain,
      protected: 0,
      covered: 0,
    },
  };
  const plan = makePlan(fleet, nothingPlaced, observed, meta, () => DESTROY_REASON);
  return { ...plan, destroy: true };
}
