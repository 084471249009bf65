// `vfleet plan`: refresh, schedule, diff (app/plan.ts), shown as text or JSON, saved with --out.
import { Command } from 'commander';
import { startStateRead } from '../../app/state-read-start.js';
import type { Terminal } from '../terminal.js';

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
export async function runPlanCommand(args: PlanArgs, terminal: Terminal): Promise<number> {
  // The state read first (app/state-read-start.ts), before the rest of the command is loaded
  // (the scheduler, the planner, ioredis: cli/plan-runner.ts): the records arrive while it
  // loads.
  const started = startStateRead(args.file, { cwd: process.cwd(), env: process.env });
  const { runPlan } = await import('../plan-runner.js');
  return runPlan(args, terminal, started);
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
