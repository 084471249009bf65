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
