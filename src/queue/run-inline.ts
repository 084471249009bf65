// A plan run in this process, without queues: the same job trees (plan-jobs.ts) and the same
// handler a worker runs (action-handler.ts, with its checks of the current plan and the leader's
// fencing token), one job at a time, children before their parent, one attempt each. For the
// controller's seeded simulation, which runs thousands of reconciles on a virtual clock and must
// not wait on BullMQ's real-time polling; `runPlan` is what apply uses.
import type { Plan } from '../model/plan.js';
import { actionHandler, type EngineLookup, type StateSink } from './action-handler.js';
import type { JobNode } from './plan-jobs.js';
import { planWaves } from './plan-jobs.js';
import { RolloutGate } from './rollout-gate.js';
import type { ActionOutcome } from './run-plan.js';

export interface InlineOptions {
  readonly engines: EngineLookup;
  readonly state: StateSink;
  readonly clock: () => number;
  /** The clock patch windows are read by (default: clock). */
  readonly windowClock?: () => number;
  readonly leaderToken?: number;
  readonly onOutcome?: (outcome: ActionOutcome) => void;
}

export async function runPlanInline(plan: Plan, options: InlineOptions): Promise<ActionOutcome[]> {
  const handler = actionHandler(options.engines, options.state, options.clock);
  const { waves, jobOf } = planWaves(plan, options.leaderToken);
  const outcomes: ActionOutcome[] = [];
  const failedActions = new Set<string>();
  const gate = new RolloutGate(plan, options.windowClock ?? options.clock);
  const run = async (node: JobNode): Promise<ActionOutcome['outcome']> => {
    for (const child of node.children) {
      const outcome = await run(child);
      if (outcome === 'failed') return 'failed';
    }
    return handler({ name: node.name, data: node.data });
  };
  for (const wave of waves) {
    for (const entry of wave) {
      const a = entry.action;
      // An action whose dependency failed is skipped, as a flow's parent is; a patch outside
      // its window is deferred (rollout-gate.ts).
      if (failedActions.has(a.id)) continue;
      const held = gate.check(a);
      if (held) {
        failedActions.add(a.id);
        outcomes.push(held);
        options.onOutcome?.(held);
        continue;
      }
      let outcome: ActionOutcome;
      try {
        outcome = { action: a.id, outcome: await run(jobOf(entry)), error: null };
      } catch (e) {
        outcome = {
          action: a.id,
          outcome: 'failed',
          error: e instanceof Error ? e.message : String(e),
        };
      }
      if (outcome.outcome === 'failed') failedActions.add(a.id);
      gate.settled(outcome);
      if (entry.part === 'vacate' && outcome.outcome !== 'failed') continue; // its move-in reports
      outcomes.push(outcome);
      options.onOutcome?.(outcome);
    }
  }
  return outcomes;
}
