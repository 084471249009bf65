// `vfleet plan` after its state read has started (commands/plan-command.ts): refresh, schedule,
// diff (app/plan.ts), shown as text or JSON, saved with --out. Loaded by the command once the
// read is on its way, with everything it needs.
import { writeFileSync } from 'node:fs';
import { planFleet } from '../app/plan.js';
import type { FleetSession } from '../app/session.js';
import type { StateReadStart } from '../app/state-read-start.js';
import { serializePlan } from '../plan/plan-file.js';
import type { PlanArgs } from './commands/plan-command.js';
import { withSession } from './open-session.js';
import type { Terminal } from './terminal.js';
import { renderExplanationText } from './views/placement-view.js';
import { healthWarnings, renderPlanText } from './views/plan-view.js';

/**
 * `vfleet plan` once its state read is on its way (plan-command.ts): exit 0, or with
 * --detailed-exitcode 0 no changes / 2 changes; 1 on error.
 */
export function runPlan(
  args: PlanArgs,
  terminal: Terminal,
  started: StateReadStart | undefined,
): Promise<number> {
  const read = async (session: FleetSession) => {
    const { plan, explanation, health } = await planFleet(session, {
      destroy: args.destroy,
      ...(args.explain === undefined ? {} : { explain: args.explain }),
    });
    for (const w of await session.engines.factsWarnings()) terminal.err(`Warning: ${w}`);
    for (const w of healthWarnings(health)) terminal.err(`Warning: ${w}`);
    if (args.out) writeFileSync(args.out, serializePlan(plan));
    if (args.json) terminal.out(serializePlan(plan));
    else {
      if (args.explain && explanation)
        terminal.out(renderExplanationText(explanation, args.explain));
      terminal.out(renderPlanText(plan));
      if (args.out)
        terminal.out(`Saved the plan to ${args.out}: apply it with \`vfleet apply ${args.out}\`.`);
    }
    return args.detailedExitcode && plan.actions.length > 0 ? 2 : 0;
  };
  // A plan only reads: its state read may start before the spec is parsed.
  return withSession(args.file, terminal, read, { prefetchState: started });
}
