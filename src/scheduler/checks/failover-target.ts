// A protected instance gets a failover target outside its failure domain that can take it when
// that domain fails (failover-reserve.ts finds one), and the pools that cover failover can pay
// for it there. Last: the search for a target costs the most. Its answer carries the target, so
// the host and its target reach the commit together (choice.ts).
import type { LicensePool } from '../../model/fleet.js';
import type { GroupPlan } from '../group-plan.js';
import type { PlacementState } from '../placement-state.js';
import { type Fit, no } from './check.js';
import { licenseExhausted } from './license-entitlement.js';

const FAILOVER_CAPACITY = no('failover-capacity');

export const failoverTarget = {
  name: 'failover-target',
  /** `preferred`: the target the instance was observed with (-1: none), tried first. */
  check(s: PlacementState, p: GroupPlan, h: number, preferred: number): Fit {
    const d = s.domainOf[h] as number;
    const t = s.reserve.findTarget(p, d, h, preferred);
    if (t < 0) return FAILOVER_CAPACITY;
    for (const pool of p.coverPools) {
      const units =
        s.ledger.primaryDelta(pool, h, p.group.resources) + s.ledger.failoverDelta(pool, t, d);
      if (!s.ledger.affordable(pool, units)) {
        return licenseExhausted(s.fleet.licenses[pool] as LicensePool);
      }
    }
    return { ok: true, target: t };
  },
};
