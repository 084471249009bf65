// The scheduler's stack (habit 4, docs/architecture.md; Nomad's scheduler/stack.go): the stages
// and the checks, in the order they run, and why. schedule.ts runs the stages in this order;
// STATIC_CHECKS and feasible() below hold the checks in this order.
//
// Stages:
//   1. classes — instances of one group are identical (Borg's equivalence classes): the static
//                checks run once per class of identical constraints, giving its member hosts and
//                one FitIndex over them (group-plan.ts, placement-state.ts).
//   2. keep    — an observed instance whose host still passes every check stays, with its
//                observed failover target if that still works (keep.ts). Before anything new is
//                placed, so that new instances cannot crowd out old ones and a small spec change
//                gives a small plan. Then the protected instances of hosts that are down go to
//                the failover hosts reserved for them, highest failover priority first: the
//                reserve was kept for exactly this.
//   3. place   — the remaining replicas in one sequence (place-order.ts): groups on host-metric
//                license pools first (they concentrate on few licensed hosts before anything
//                else takes the room there), then the others, most constrained and largest first
//                (first-fit decreasing packs better), memory-heavy and vCPU-heavy replicas
//                interleaved (a mixed stream fills hosts in both resources). Each replica goes on
//                the first host a walk of its class's FitIndex finds that passes the dynamic
//                checks (place.ts): best fit (binpack) or worst fit (spread), or, for licensed
//                groups, where licenses cost least (license-scorer.ts).
//   4. report  — placements in spec order, host use and reserves, license use, and for each
//                unplaceable instance how many hosts each reason ruled out (report.ts).
//
// Checks (checks/, each returning ok or a reason): the first that fails names a host's reason,
// so cheap and certain checks come first.
//   static  — not down, not draining, runs the kind, OS compatible, required labels, spread label: they
//             depend only on the spec (stage 1).
//   dynamic — capacity (the common reason, and the cheapest), anti-affinity, spread skew,
//             licenses, and last the failover target, whose search costs the most and whose
//             answer carries the target (stages 2 and 3).
import type { Host, Image, InstanceGroup } from '../model/fleet.js';
import type { DynamicReason, StaticReason } from '../model/placement.js';
import { antiAffinity } from './checks/anti-affinity.js';
import { type Fit, NO_TARGET, type StaticCheck, type Verdict } from './checks/check.js';
import { failoverTarget } from './checks/failover-target.js';
import { freeCapacity } from './checks/free-capacity.js';
import { licenseEntitlement } from './checks/license-entitlement.js';
import { notDown } from './checks/not-down.js';
import { notDraining } from './checks/not-draining.js';
import { osCompatible } from './checks/os-compatible.js';
import { requiredLabels } from './checks/required-labels.js';
import { runsKind } from './checks/runs-kind.js';
import { carriesSpreadLabel } from './checks/spread-label.js';
import { spreadSkew } from './checks/spread-skew.js';
import type { GroupPlan } from './group-plan.js';
import type { PlacementState } from './placement-state.js';

export const STATIC_CHECKS: readonly StaticCheck[] = [
  notDown,
  notDraining,
  runsKind,
  osCompatible,
  requiredLabels,
  carriesSpreadLabel,
];

/** The first static check that rules the host out for the group; null if none does. */
export function staticReason(host: Host, group: InstanceGroup, image: Image): StaticReason | null {
  for (const check of STATIC_CHECKS) {
    const verdict = check.check(host, group, image);
    if (!verdict.ok) return verdict.reason;
  }
  return null;
}

/**
 * The dynamic checks on host h for an instance of p (whose class h is a member of), in order:
 * ok with the failover target, or the first reason. `preferred`: the target it was observed
 * with. (Called by name rather than from a list: this runs for every host every walk visits,
 * and direct calls let V8 inline the checks.)
 */
export function feasible(s: PlacementState, p: GroupPlan, h: number, preferred = -1): Fit {
  const fit = feasibleUnprotected(s, p, h);
  return fit.ok && p.isProtected ? failoverTarget.check(s, p, h, preferred) : fit;
}

/**
 * The dynamic checks but the failover target — what `feasible` checks first; alone, where a down
 * host's protected instance may still restart when no reserve is left for it (it runs
 * unprotected rather than not at all, as vSphere HA restarts VMs whatever admission control would
 * now refuse).
 */
export function feasibleUnprotected(s: PlacementState, p: GroupPlan, h: number): Fit {
  let verdict: Verdict<DynamicReason> = freeCapacity.check(s, p, h);
  if (!verdict.ok) return verdict;
  verdict = antiAffinity.check(s, p, h);
  if (!verdict.ok) return verdict;
  verdict = spreadSkew.check(s, p, h);
  if (!verdict.ok) return verdict;
  verdict = licenseEntitlement.check(s, p, h);
  return verdict.ok ? NO_TARGET : verdict;
}

/**
 * A restart of a down host's protected instance onto the failover host the reserve kept for it:
 * capacity and licenses only. Anti-affinity and spread are not checked — the reserve does not
 * model them (several replicas of a group avoiding itself may share one target), and a restart
 * that honoured them would leave the instance down; vSphere HA restarts against its affinity
 * rules by default for the same reason. The next plan shows what a placement from scratch would
 * move (docs/controller.md).
 */
export function fitsReservedTarget(s: PlacementState, p: GroupPlan, h: number): Fit {
  const verdict: Verdict<DynamicReason> = freeCapacity.check(s, p, h);
  if (!verdict.ok) return verdict;
  const licensed = licenseEntitlement.check(s, p, h);
  return licensed.ok ? NO_TARGET : licensed;
}

/** The first check, static or dynamic, that rules host h out for p; null if none does. */
export function reasonFor(
  s: PlacementState,
  p: GroupPlan,
  h: number,
  preferred = -1,
): StaticReason | DynamicReason | null {
  const reason = staticReason(s.hosts[h] as Host, p.group, p.image);
  if (reason !== null) return reason;
  const fit = feasible(s, p, h, preferred);
  return fit.ok ? null : fit.reason;
}
