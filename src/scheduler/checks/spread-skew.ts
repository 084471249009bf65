// Replicas of a spread group stay balanced over the values of its label, with a skew of at most
// 1 (Kubernetes' DoNotSchedule): a replica may only go to a value with the fewest replicas. While
// observed instances are kept, each value keeps up to its cap instead (keep.ts, keepCapsOf).
import { type DynamicCheck, no, OK } from './check.js';

const SPREAD_SKEW = no('spread-skew');

export const spreadSkew: DynamicCheck = {
  name: 'spread-skew',
  check: (s, p, h) => {
    const spread = p.spread;
    if (!spread) return OK;
    const v = spread.valueAt[h] as number;
    const count = spread.counts[v] as number;
    if (v < 0 || (s.keeping ? count >= (spread.keepCaps[v] as number) : count !== spread.min)) {
      return SPREAD_SKEW;
    }
    return OK;
  },
};
