// No group the instance's group avoids runs on the host. `avoid` is symmetric (group-plan.ts):
// if web avoids db, db avoids web; a group that avoids itself puts one replica per host.
import { type DynamicCheck, no, OK } from './check.js';

const ANTI_AFFINITY = no('anti-affinity');

export const antiAffinity: DynamicCheck = {
  name: 'anti-affinity',
  check: (s, p, h) => {
    if (p.avoid.length > 0) {
      const present = s.groupsOn[h] as Map<number, number>;
      for (const a of p.avoid) if (present.has(a)) return ANTI_AFFINITY;
    }
    return OK;
  },
};
