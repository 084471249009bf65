// Stage 2 of the stack (stack.ts), keep: an observed instance whose host still passes every check
// stays there, with its observed failover target if that still works. Before anything new is
// placed, so that new instances cannot crowd out old ones and a small spec change gives a small
// plan. With hosts down, their protected instances restart on their reserved targets in between
// (restartOnReservedTargets), before the kept instances take standby for a further failure.
import { replicaName } from '../model/fleet.js';
import type { ObservedPlacement } from '../model/placement.js';
import { failoverTarget } from './checks/failover-target.js';
import type { GroupPlan } from './group-plan.js';
import type { Explaining } from './place.js';
import type { PlacementState } from './placement-state.js';
import { evaluateAll, markChosen } from './report.js';
import { feasible, feasibleUnprotected, fitsReservedTarget } from './stack.js';

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
  // With hosts down, the reserve kept for their failure is spent now: what runs keeps its room
  // first, the down hosts' protected instances restart into the reserve meant for them, and only
  // then do the kept instances get standby for a further failure, from what is left (vSphere HA
  // restarts first; admission control applies to what comes after).
  const degraded = s.hosts.some((h) => h.down);
  const deferred: Array<{ p: GroupPlan; i: number; host: number; target: number }> = [];
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
      if (degraded) {
        // Its room now; its reserve once the down hosts' instances have restarted.
        if (!feasibleUnprotected(s, p, w.host).ok) continue;
        s.commitHost(p, i, w.host);
        if (p.isProtected) deferred.push({ p, i, host: w.host, target: w.target });
      } else {
        const fit = feasible(s, p, w.host, w.target);
        if (!fit.ok) continue;
        s.commit(p, i, { host: w.host, target: fit.target });
      }
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
  restartOnReservedTargets(s, wanted, deferred);
  // Then standby for a further failure, from what is left: kept instances first (in spec order),
  // then the restarted ones; an instance without room for it runs unprotected.
  for (const { p, i, host, target } of deferred) {
    s.reserve.newTurn();
    const fit = failoverTarget.check(s, p, host, target);
    if (fit.ok && fit.target >= 0) s.commitTarget(p, i, host, fit.target);
  }
}

const PRIORITY_ORDER = { high: 0, medium: 1, low: 2 } as const;

/**
 * The protected instances of hosts that are down (lost or fenced, Host.down) go to the failover
 * host the reserve kept for them, if it still passes every check — highest failover priority
 * first, so that when a reserve falls short (a second failure) what matters most restarts first.
 * Each gets standby for a further failure afterwards, if any is left (else it runs unprotected).
 * What does not fit its target is placed like any new instance by the place stage.
 */
function restartOnReservedTargets(
  s: PlacementState,
  wanted: ReadonlyMap<string, { host: number; target: number }>,
  deferred: Array<{ p: GroupPlan; i: number; host: number; target: number }>,
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
      // Into the room its reserve kept: no new standby is taken before every restart is in.
      if (!fitsReservedTarget(s, p, w.target).ok) continue;
      s.commitHost(p, i, w.target);
      deferred.push({ p, i, host: w.target, target: -1 });
    }
  }
  // Those whose reserved host is down too (a second failure) or full: on the first host that
  // passes every check but the failover target — up and unprotected rather than down. (The place
  // stage would refuse them for want of a target.)
  for (const p of plans) {
    for (let i = 0; i < p.group.replicas; i++) {
      if ((p.hostOf[i] as number) >= 0) continue;
      const w = wanted.get(replicaName(p.group.name, i));
      if (w === undefined || !s.hosts[w.host]?.down) continue;
      const h = p.cls.members.find((m) => feasibleUnprotected(s, p, m).ok) as number | undefined;
      if (h === undefined) continue;
      s.commitHost(p, i, h);
      deferred.push({ p, i, host: h, target: -1 });
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
