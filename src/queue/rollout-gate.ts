// What decides, as each action of a plan is about to start, whether it starts at all — shared by
// runPlan (apply, through the host queues) and runPlanInline (the controller's simulation):
//
// - an action waiting for one that failed is skipped; a patch waiting for a patch of its own
//   group that failed is skipped as its group's rollout having stopped there ("rollout stopped
//   after web-1 failed", docs/patching.md), while other groups' rollouts go on;
// - a patch whose group's maintenance window is closed now (the clock, read as the patch is about
//   to start) is deferred until the window opens, and so is what waits for it (its group's later
//   batches): a window that closes midway stops the rollout from starting new batches, and the
//   batch already running finishes.
import type { Plan, PlanAction } from '../model/plan.js';
import { windowAt } from '../patching/patch-window.js';
import type { ActionOutcome } from './run-plan.js';

/** Why an action did not run, kept for what waits for it. */
interface Cause {
  readonly kind: 'failed' | 'deferred';
  /** The action that failed first (for a rollout: its instance), or that was deferred. */
  readonly root: PlanAction;
  /** deferred: when the window opens (ISO 8601, or never). */
  readonly until?: string;
}

/** A rollout that stopped: its group and the replica whose patch failed. */
export interface StoppedRollout {
  readonly group: string;
  readonly after: string;
}

export class RolloutGate {
  private readonly byId: ReadonlyMap<string, PlanAction>;
  private readonly causes = new Map<string, Cause>();
  private readonly stopped = new Map<string, string>();

  constructor(
    plan: Plan,
    private readonly clock: () => number,
  ) {
    this.byId = new Map(plan.actions.map((a) => [a.id, a]));
  }

  /** The outcome the action has without running (skipped, deferred), or null: run it. */
  check(action: PlanAction): ActionOutcome | null {
    let cause: Cause | undefined;
    for (const dep of action.dependsOn) {
      const c = this.causes.get(dep);
      // A failure outweighs a deferral: the rollout would not go on once the window opens.
      if (c && (cause === undefined || (cause.kind === 'deferred' && c.kind === 'failed'))) {
        cause = c;
      }
    }
    if (cause?.kind === 'failed') {
      this.causes.set(action.id, cause);
      const rollout =
        action.kind === 'patch' && cause.root.kind === 'patch' && cause.root.group === action.group;
      if (rollout) this.stopped.set(action.group, cause.root.instance);
      return rollout
        ? {
            action: action.id,
            outcome: 'skipped',
            error: `rollout stopped after ${cause.root.instance} failed`,
            stoppedAfter: cause.root.instance,
          }
        : { action: action.id, outcome: 'skipped', error: 'an action it waits for failed' };
    }
    if (cause === undefined && action.kind === 'patch' && action.window !== undefined) {
      const state = windowAt(action.window, this.clock());
      if (!state.open) {
        const until = state.opensAt === null ? 'never' : new Date(state.opensAt).toISOString();
        cause = { kind: 'deferred', root: action, until };
      }
    }
    if (cause?.kind === 'deferred') {
      this.causes.set(action.id, cause);
      return {
        action: action.id,
        outcome: 'deferred',
        until: cause.until as string,
        error:
          cause.until === 'never'
            ? 'deferred: its patch window never opens again'
            : `deferred until ${cause.until}: outside its patch window`,
      };
    }
    return null;
  }

  /** An outcome as it comes: a failure is what its dependents are skipped for. */
  settled(outcome: ActionOutcome): void {
    if (outcome.outcome !== 'failed' || this.causes.has(outcome.action)) return;
    const action = this.byId.get(outcome.action);
    if (action) this.causes.set(action.id, { kind: 'failed', root: action });
  }

  /** The rollouts that stopped at a failure, by group. */
  stoppedRollouts(): StoppedRollout[] {
    return [...this.stopped].map(([group, after]) => ({ group, after }));
  }
}
