// `vfleet plan`: refresh, schedule, diff (app/plan.ts), shown as text or JSON, saved with --out.
import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { planFleet } from '../../app/plan.js';
import type { FleetSession } from '../../app/session.js';
import { serializePlan } from '../../plan/plan-file.js';
import { withSession } from '../open-session.js';
import type { Terminal } from '../terminal.js';
import { renderExplanationText } from '../views/placement-view.js';
import { healthWarnings, renderPlanText } from '../views/plan-view.js';

export interface PlanArgs {
  readonly file: string;
  readonly out: string | undefined;
  readonly json: boolean;
  readonly detailedExitcode: boolean;
  readonly explain: string | undefined;
  /** Plan the removal of every instance of the fleet (Terraform's `plan -destroy`). */
  readonly destroy: boolean;
}

/** Exit 0, or with --detailed-exitcode 0 no changes / 2 changes; 1 on error. */
export function runPlanCommand(args: PlanArgs, terminal: Terminal): Promise<number> {
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
  return withSession(args.file, terminal, read, { prefetchState: true });
}

export function planCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('plan')
    .description(
      'show what apply would change: placements, license use before → after, failover coverage',
    )
    .argument('[file]', 'the fleet spec (same as -f)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--out <plan.json>', 'save the plan for `vfleet apply plan.json`')
    .option('--json', 'print the plan as JSON (formatVersion 1)', false)
    .option('--detailed-exitcode', 'exit 2 when there are changes, 0 when there are none', false)
    .option('--explain <instance>', "show every host's verdict and score for one instance")
    .option('--destroy', 'plan the removal of every instance of the fleet (vfleet destroy)', false)
    .action(
      async (
        file: string | undefined,
        o: {
          file: string;
          out?: string;
          json: boolean;
          detailedExitcode: boolean;
          explain?: string;
          destroy: boolean;
        },
      ) => {
        setExit(
          await runPlanCommand(
            {
              file: file ?? o.file,
              out: o.out,
              json: o.json,
              detailedExitcode: o.detailedExitcode,
              explain: o.explain,
              destroy: o.destroy,
            },
            terminal,
          ),
        );
      },
    );
}
