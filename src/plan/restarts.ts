// The restarts of a plan: the creates that bring a down host's instances up elsewhere
// (make-plan.ts). The controller runs them even when it only reports other drift (without
// --auto-apply): restarting a dead host's instances is what it is for, as vSphere HA restarts
// VMs whatever else differs from the inventory.
import type { Plan, PlanAction } from '../model/plan.js';

export function isRestart(action: PlanAction): boolean {
  return action.kind === 'create' && action.fromHost !== null;
}

/** The plan narrowed to its restarts (their dependencies on other actions dropped). */
export function restartsOnly(plan: Plan): Plan {
  const kept = plan.actions.filter(isRestart);
  const ids = new Set(kept.map((a) => a.id));
  return {
    ...plan,
    actions: kept.map((a) => ({ ...a, dependsOn: a.dependsOn.filter((d) => ids.has(d)) })),
    summary: { create: kept.length, move: 0, update: 0, patch: 0, destroy: 0 },
  };
}

/**
 * The plan without its removals (the controller without --prune, as Argo CD and Flux leave
 * resources gone from git in place unless pruning is on): every destroy is dropped, and so is
 * every action that waits for one, however indirectly (it may need the room the destroy frees).
 * Returns the narrowed plan and what was held back.
 */
export function withoutRemovals(plan: Plan): { plan: Plan; held: readonly PlanAction[] } {
  return withoutActions(
    plan,
    plan.actions.filter((a) => a.kind === 'destroy').map((a) => a.id),
  );
}

/**
 * The plan without the given actions and every action that waits for one of them, however
 * indirectly; its summary counted again. Returns the narrowed plan and what was held back.
 */
export function withoutActions(
  plan: Plan,
  ids: readonly string[],
): { plan: Plan; held: readonly PlanAction[] } {
  const dropped = new Set(ids);
  if (dropped.size === 0) return { plan, held: [] };
  for (let grew = true; grew; ) {
    grew = false;
    for (const a of plan.actions) {
      if (!dropped.has(a.id) && a.dependsOn.some((d) => dropped.has(d))) {
        dropped.add(a.id);
        grew = true;
      }
    }
  }
  const kept = plan.actions.filter((a) => !dropped.has(a.id));
  const count = (...kinds: string[]) => kept.filter((a) => kinds.includes(a.kind)).length;
  return {
    plan: {
      ...plan,
      actions: kept,
      summary: {
        create: count('create'),
        move: count('move'),
        update: count('update', 'start', 'retarget'),
        patch: count('patch'),
        destroy: count('destroy'),
      },
    },
    held: plan.actions.filter((a) => dropped.has(a.id)),
  };
}
