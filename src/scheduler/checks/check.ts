// What a check is (habit 3, docs/architecture.md; Kubernetes' filter plugins return a Status with
// a code, Nomad's feasibility checkers a reason): a small named object that answers ok or names
// a reason, and never throws. Which checks run, and in what order, is stack.ts's to say.
import type { Host, Image, InstanceGroup } from '../../model/fleet.js';
import type { DynamicReason, StaticReason } from '../../model/placement.js';
import type { GroupPlan } from '../group-plan.js';
import type { PlacementState } from '../placement-state.js';

export type Verdict<R extends string> =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: R };

export const OK = { ok: true } as const;

export function no<R extends string>(reason: R): { readonly ok: false; readonly reason: R } {
  return { ok: false, reason };
}

/**
 * Depends only on the spec: run once per class of identical instances (group-plan.ts), and per
 * host again when a report or `explain` names a host's reason.
 */
export interface StaticCheck {
  readonly name: string;
  check(host: Host, group: InstanceGroup, image: Image): Verdict<StaticReason>;
}

/** Depends on what has been placed so far: run on each candidate host at an instance's turn. */
export interface DynamicCheck {
  readonly name: string;
  check(state: PlacementState, p: GroupPlan, h: number): Verdict<DynamicReason>;
}

/**
 * The dynamic checks' answer for a host: ok with the failover target the instance gets there
 * (-1 when it needs none), or the first reason. The host and its target travel together from
 * the check to the commit.
 */
export type Fit =
  | { readonly ok: true; readonly target: number }
  | { readonly ok: false; readonly reason: DynamicReason };

/** Ok, no failover target needed (an unprotected instance). */
export const NO_TARGET: Fit = { ok: true, target: -1 };
