// Stage 2 of the stack (stack.ts), keep: an observed instance whose host still passes every check
// stays there, with its observed failover target if that still works. Before anything new is
// placed, so that new instances cannot crowd out old ones and a small spec change gives a small
// plan. With hosts down, their protected instances restart on their reserved targets in between
// (restartOnReservedTargets), before the kept instances take standby for a further failure.
import { replicaIndexIn, replicaName, replicaOf } from '../model/fleet.js';
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
  // Per group plan and replica, the observed host and failover target (-1: none), found by the
  // group and index of each observed name (replicaOf) rather than by building every replica's
  // name: on 100,000 instances, building and hashing the names was most of this stage.
  const wanted: Wanted = { host: [], target: [], home: [] };
  const any = observedReplicas(s, observed, wanted);
  const { host: wantedHost, target: wantedTarget, home: wantedHome } = wanted;
  if (!any) return;
  const explained = explaining.instance ? replicaOf(explaining.instance) : undefined;
  // With hosts down, the reserve kept for their failure is spent now: what runs keeps its room
  // first, the down hosts' protected instances restart into the reserve meant for them, and only
  // then do the kept instances get standby for a further failure, from what is left (vSphere HA
  // restarts first; admission control applies to what comes after).
  const degraded = s.hosts.some((h) => h.down);
  const deferred: Deferred[] = [];
  s.keeping = true;
  s.plans.forEach((p, k) => {
    const hosts = wantedHost[k];
    const targets = wantedTarget[k] as Int32Array;
    if (p.spread) {
      // Kept replicas are judged as a set, not in the order they happen to be visited.
      const observedCounts = new Int32Array(p.spread.counts.length);
      for (let i = 0; hosts && i < p.group.replicas; i++) {
        const h = hosts[i] as number;
        const v = h >= 0 ? (p.spread.valueAt[h] as number) : -1;
        if (v >= 0) observedCounts[v] = (observedCounts[v] as number) + 1;
      }
      p.spread.keepCaps = keepCapsOf(observedCounts, p.group.replicas);
    }
    for (let i = 0; hosts && i < p.group.replicas; i++) {
      const host = hosts[i] as number;
      if (host < 0) continue;
      const target = targets[i] as number;
      s.reserve.newTurn();
      const explain = explained?.group === p.group.name && explained.index === i;
      if (explain) {
        const name = replicaName(p.group.name, i);
        explaining.explanation = evaluateAll(s, p, name, true, target);
      }
      // failback: auto, nothing down: back to the host it ran on before a restart, if it fits.
      const home = wantedHome[k]?.[i] ?? -1;
      if (!degraded && home >= 0 && home !== host && p.cls.mask[home]) {
        const back = feasible(s, p, home, -1);
        if (back.ok) {
          s.commit(p, i, { host: home, target: back.target });
          continue;
        }
      }
      if (!p.cls.mask[host]) continue;
      if (degraded) {
        // Its room now; its reserve once the down hosts' instances have restarted.
        if (!feasibleUnprotected(s, p, host).ok) continue;
        s.commitHost(p, i, host);
        if (p.isProtected) deferred.push({ p, i, host, target });
      } else {
        const fit = feasible(s, p, host, target);
        if (!fit.ok) continue;
        s.commit(p, i, { host, target: fit.target });
      }
      if (explain && explaining.explanation) {
        explaining.explanation = markChosen(explaining.explanation, host);
      }
    }
    if (p.spread) {
      let min = Number.POSITIVE_INFINITY;
      for (const c of p.spread.counts) if (c < min) min = c;
      p.spread.min = p.spread.counts.length > 0 ? min : 0;
    }
  });
  s.keeping = false;
  if (!degraded) return;
  restartOnReservedTargets(s, wantedHost, wantedTarget, deferred);
  // Then standby for a further failure, from what is left: kept instances first (in spec order),
  // then the restarted ones; an instance without room for it runs unprotected.
  for (const { p, i, host, target } of deferred) {
    s.reserve.newTurn();
    const fit = failoverTarget.check(s, p, host, target);
    if (fit.ok && fit.target >= 0) s.commitTarget(p, i, host, fit.target);
  }
}

/** Per group plan (by index) and replica: observed host, failover target and home (-1: none). */
interface Wanted {
  readonly host: Array<Int32Array | undefined>;
  readonly target: Array<Int32Array | undefined>;
  /** failback: auto — where each restarted replica ran before (-1: nowhere to go back to). */
  readonly home: Array<Int32Array | undefined>;
}

/**
 * Fills `wanted` from the observed instances; whether any is on a host of the spec. A function of
 * its own, as is each group's keeping below: V8 compiles a small loop that runs 100,000 times
 * soon after it starts, where inside one long function most of it ran uncompiled.
 */
function observedReplicas(s: PlacementState, observed: ObservedPlacement, wanted: Wanted): boolean {
  const hostByName = new Map(s.hosts.map((h, i) => [h.name, i]));
  const planByGroup = new Map(s.plans.map((p, k) => [p.group.name, k]));
  const failback = s.fleet.failover.failback === 'auto';
  let any = false;
  for (const { instance, group, host, failoverHost, homeHost } of observed.instances) {
    const h = hostByName.get(host);
    if (h === undefined) continue;
    any = true;
    let index = group === undefined ? -1 : replicaIndexIn(instance, group);
    let k = index < 0 ? undefined : planByGroup.get(group as string);
    if (index < 0) {
      const replica = replicaOf(instance);
      if (replica === undefined) continue;
      index = replica.index;
      k = planByGroup.get(replica.group);
    }
    if (k === undefined) continue;
    const p = s.plans[k] as (typeof s.plans)[number];
    const replicas = p.group.replicas;
    if (index >= replicas) continue;
    let hosts = wanted.host[k];
    let targets = wanted.target[k];
    if (hosts === undefined || targets === undefined) {
      hosts = wanted.host[k] = new Int32Array(replicas).fill(-1);
      targets = wanted.target[k] = new Int32Array(replicas);
      p.observedNames = new Array<string | undefined>(replicas);
    }
    (p.observedNames as Array<string | undefined>)[index] = instance;
    hosts[index] = h;
    targets[index] = failoverHost ? (hostByName.get(failoverHost) ?? -1) : -1;
    const home = failback && homeHost ? (hostByName.get(homeHost) ?? -1) : -1;
    if (home >= 0) {
      const homes = wanted.home[k] ?? new Int32Array(replicas).fill(-1);
      wanted.home[k] = homes;
      homes[index] = home;
    }
  }
  return any;
}

interface Deferred {
  readonly p: GroupPlan;
  readonly i: number;
  readonly host: number;
  readonly target: number;
}

const PRIORITY_ORDER = { high: 0, medium: 1, low: 2 } as const;

/**
 * The protected instances of hosts that are down (lost or fenced, Host.down) go to the failover
 * host the reserve kept for them — highest failover priority first, so that when a reserve falls
 * short (a second failure) what matters most restarts first — checking capacity and licenses
 * only (stack.ts, fitsReservedTarget). Those whose reserved host is down too, or full, go on the
 * first host that passes every check but the failover target. Each gets standby for a further
 * failure afterwards, if any is left (else it runs unprotected). The place stage places the rest.
 */
function restartOnReservedTargets(
  s: PlacementState,
  wantedHost: ReadonlyArray<Int32Array | undefined>,
  wantedTarget: ReadonlyArray<Int32Array | undefined>,
  deferred: Deferred[],
): void {
  const order = s.plans
    .map((p, k) => ({ p, k }))
    .filter(({ p, k }) => p.isProtected && wantedHost[k] !== undefined)
    .sort(
      (a, b) =>
        PRIORITY_ORDER[a.p.group.failoverPriority] - PRIORITY_ORDER[b.p.group.failoverPriority] ||
        a.p.g - b.p.g,
    );
  const restartable = (p: GroupPlan, k: number, i: number) => {
    const host = (wantedHost[k] as Int32Array)[i] as number;
    return (p.hostOf[i] as number) < 0 && host >= 0 && s.hosts[host]?.down === true;
  };
  for (const { p, k } of order) {
    for (let i = 0; i < p.group.replicas; i++) {
      if (!restartable(p, k, i)) continue;
      const target = (wantedTarget[k] as Int32Array)[i] as number;
      if (target < 0 || !p.cls.mask[target]) continue;
      // Into the room its reserve kept: no new standby is taken before every restart is in.
      if (!fitsReservedTarget(s, p, target).ok) continue;
      s.commitHost(p, i, target);
      deferred.push({ p, i, host: target, target: -1 });
    }
  }
  // Those whose reserved host is down too (a second failure) or full: up and unprotected rather
  // than down (the place stage would refuse them for want of a target).
  for (const { p, k } of order) {
    for (let i = 0; i < p.group.replicas; i++) {
      if (!restartable(p, k, i)) continue;
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
