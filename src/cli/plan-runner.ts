// `vfleet plan` after its state read has started (commands/plan-command.ts): refresh, schedule,
// diff (app/plan.ts), shown as text, Markdown or JSON, saved with --out, appended to a GitHub
// step summary. Loaded by the command once the read is on its way, with everything it needs.
import { writeFileSync } from 'node:fs';
import { planFleet } from '../app/plan.js';
import type { FleetSession } from '../app/session.js';
import type { StateReadStart } from '../app/state-read-start.js';
import { serializePlan } from '../plan/plan-file.js';
import type { PlanArgs } from './commands/plan-command.js';
import { withSession } from './open-session.js';
import { appendStepSummary, stepSummaryFile } from './step-summary.js';
import type { Terminal } from './terminal.js';
import { renderExplanationText } from './views/placement-view.js';
import { renderPlanMarkdown } from './views/plan-markdown-view.js';
import { healthWarnings, renderPlanText } from './views/plan-view.js';
import { windowClock } from './window-clock.js';

/**
 * `vfleet plan` once its state read is on its way (plan-command.ts): exit 0, or with
 * --detailed-exitcode 0 no changes / 2 changes; 1 on error.
 */
export function runPlan(
  args: PlanArgs,
  terminal: Terminal,
  started: StateReadStart | undefined,
  env: NodeJS.ProcessEnv,
): Promise<number> {
  const summaryFile = args.stepSummary ? stepSummaryFile(env) : undefined;
  const read = async (session: FleetSession) => {
    const { plan, explanation, health } = await planFleet(session, {
      destroy: args.destroy,
      windowsAtMs: windowClock(env)(),
      ...(args.explain === undefined ? {} : { explain: args.explain }),
    });
    const warnings = [...(await session.engines.factsWarnings()), ...healthWarnings(health)];
    for (const w of warnings) terminal.err(`Warning: ${w}`);
    if (args.out) writeFileSync(args.out, serializePlan(plan));
    const markdown = () =>
      renderPlanMarkdown(plan, {
        warnings,
        ...(args.explain === undefined
          ? {}
          : { explanation: { instance: args.explain, of: explanation } }),
      });
    if (args.format === 'json') terminal.out(serializePlan(plan));
    else if (args.format === 'md') terminal.out(markdown());
    else {
      if (args.explain && explanation)
        terminal.out(renderExplanationText(explanation, args.explain));
      terminal.out(renderPlanText(plan));
      if (args.out)
        terminal.out(`Saved the plan to ${args.out}: apply it with \`vfleet apply ${args.out}\`.`);
    }
    if (summaryFile !== undefined) appendStepSummary(summaryFile, markdown());
    return args.detailedExitcode && plan.actions.length > 0 ? 2 : 0;
  };
  // A plan only reads: its state read may start before the spec is parsed.
  return withSession(args.file, terminal, read, { prefetchState: started });
}
