// Stage 2 of the stack (stack.ts), keep: an observed instance whose host still passes every check
// stays there, with its observed failover target if that still works. Before anything new is
// placed, so that new instances cannot crowd out old ones and a small spec change gives a small
// plan.
import { replicaName } from '../model/fleet.js';
import type { ObservedPlacement } from '../model/placement.js';
import type { Explaining } from './place.js';
import type { PlacementState } from './placement-state.js';
import { evaluateAll, markChosen } from './report.js';
import { feasible, feasibleUnprotected } from './stack.js';

export function keepObserved(
  s: PlacementState,
  observed: ObservedPlacement,
  explaining: Explaining,
): void {
  const hostByName = new Map(s.hosts.map((h, i) => [h.name, i]));
  const wanted = new Map<string, { host: number; target: number }>();
  for (const { instance, host, failoverHost } of observed.instances) {
    const h = hostByName.get(host);
    const t = failoverHost ? (hostByName.get(failoverHost) ?? -1) : -1;
    if (h !== undefined) wanted.set(instance, { host: h, target: t });
  }
  if (wanted.size === 0) return;
  s.keeping = true;
  for (const p of s.plans) {
    if (p.spread) {
      // Kept replicas are judged as a set, not in the order they happen to be visited.
      const observedCounts = new Int32Array(p.spread.counts.length);
      for (let i = 0; i < p.group.replicas; i++) {
        const w = wanted.get(replicaName(p.group.name, i));
        const v = w ? (p.spread.valueAt[w.host] as number) : -1;
        if (v >= 0) observedCounts[v] = (observedCounts[v] as number) + 1;
      }
      p.spread.keepCaps = keepCapsOf(observedCounts, p.group.replicas);
    }
    for (let i = 0; i < p.group.replicas; i++) {
      const name = replicaName(p.group.name, i);
      const w = wanted.get(name);
      if (w === undefined) continue;
      s.reserve.newTurn();
      const explain = explaining.instance === name;
      if (explain) explaining.explanation = evaluateAll(s, p, name, true, w.target);
      if (!p.cls.mask[w.host]) continue;
      const fit = feasible(s, p, w.host, w.target);
      if (!fit.ok) continue;
      s.commit(p, i, { host: w.host, target: fit.target });
      if (explain && explaining.explanation) {
        explaining.explanation = markChosen(explaining.explanation, w.host);
      }
    }
    if (p.spread) {
      let min = Number.POSITIVE_INFINITY;
      for (const c of p.spread.counts) if (c < min) min = c;
      p.spread.min = p.spread.counts.length > 0 ? min : 0;
    }
  }
  s.keeping = false;
  restartOnReservedTargets(s, wanted);
}

const PRIORITY_ORDER = { high: 0, medium: 1, low: 2 } as const;

/**
 * The protected instances of hosts that are down (lost or fenced, Host.down) go to the failover
 * host the reserve kept for them, if it still passes every check — highest failover priority
 * first, so that when a reserve falls short (a second failure) what matters most restarts first.
 * When no reserve is left for it on its target (a second failure), it restarts there
 * unprotected. What does not fit its target is placed like any new instance by the place stage.
 */
function restartOnReservedTargets(
  s: PlacementState,
  wanted: ReadonlyMap<string, { host: number; target: number }>,
): void {
  const plans = s.plans
    .filter((p) => p.isProtected)
    .sort(
      (a, b) =>
        PRIORITY_ORDER[a.group.failoverPriority] - PRIORITY_ORDER[b.group.failoverPriority] ||
        a.g - b.g,
    );
  for (const p of plans) {
    for (let i = 0; i < p.group.replicas; i++) {
      if ((p.hostOf[i] as number) >= 0) continue;
      const w = wanted.get(replicaName(p.group.name, i));
      if (w === undefined || w.target < 0 || !s.hosts[w.host]?.down) continue;
      if (!p.cls.mask[w.target]) continue;
      s.reserve.newTurn();
      const fit = feasible(s, p, w.target);
      if (fit.ok) s.commit(p, i, { host: w.target, target: fit.target });
      else if (fit.reason === 'failover-capacity') {
        // No reserve left for it (a second failure): it restarts unprotected, not never.
        const bare = feasibleUnprotected(s, p, w.target);
        if (bare.ok) s.commit(p, i, { host: w.target, target: -1 });
      }
    }
  }
}

/**
 * How many observed replicas each spread value may keep. The group's end state is balanced: with
 * N replicas over V values each value holds q = ⌊N/V⌋ or q + 1, and r = N mod V of them hold
 * q + 1. Every value keeps up to q, and the r values observed with the most replicas keep q + 1;
 * placing the rest where the count is lowest then ends balanced (skew ≤ 1). Any subset of a
 * balanced placement is kept whole — an apply that stopped halfway resumes without moving what it
 * created — and a new value (a rack added) draws only what balance needs from the others. (The
 * rule it replaces, the observed minimum + 1, kept one replica per value whenever one value had
 * none yet: a half-done apply re-planned with moves, swaps among them.)
 */
export function keepCapsOf(observedCounts: Int32Array, replicas: number): Int32Array {
  const values = observedCounts.length;
  const caps = new Int32Array(values);
  if (values === 0) return caps;
  const q = Math.floor(replicas / values);
  let r = replicas % values;
  caps.fill(q);
  const byCount = [...observedCounts.keys()].sort(
    (a, b) => (observedCounts[b] as number) - (observedCounts[a] as number) || a - b,
  );
  for (const v of byCount) {
    if (r === 0 || (observedCounts[v] as number) <= q) break;
    caps[v] = q + 1;
    r--;
  }
  return caps;
}
