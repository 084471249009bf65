// `vfleet plan`: refresh, schedule, diff (app/plan.ts), shown as text, Markdown (a pull request
// comment) or JSON, saved with --out, appended to a GitHub step summary with --step-summary. The
// command itself stays light: it starts the state read, then loads cli/plan-runner.ts.
import { Command, Option } from 'commander';
import { describeFileSource } from '../../app/source.js';
import { startStateRead } from '../../app/state-read-start.js';
import { VfleetError } from '../../model/errors.js';
import type { Terminal } from '../terminal.js';

export const PLAN_FORMATS = ['text', 'md', 'json'] as const;
export type PlanFormat = (typeof PLAN_FORMATS)[number];

export interface PlanArgs {
  readonly file: string;
  readonly out: string | undefined;
  readonly format: PlanFormat;
  /** Also append the Markdown view to $GITHUB_STEP_SUMMARY. */
  readonly stepSummary: boolean;
  readonly detailedExitcode: boolean;
  readonly explain: string | undefined;
  /** Plan the removal of every instance of the fleet (Terraform's `plan -destroy`). */
  readonly destroy: boolean;
}

/** Exit 0, or with --detailed-exitcode 0 no changes / 2 changes; 1 on error. */
export async function runPlanCommand(
  args: PlanArgs,
  terminal: Terminal,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  // The state read first (app/state-read-start.ts), before the rest of the command is loaded
  // (the scheduler, the planner, ioredis: cli/plan-runner.ts): the records arrive while it
  // loads.
  const started = startStateRead(args.file, { cwd: process.cwd(), env });
  // And git asked for the spec's commit now, while this process is small: a child process forks
  // the whole process, ~25 ms of this thread per git at a 100,000-instance spec's size, once
  // parsed. The answer is kept for the plan (app/source.ts).
  describeFileSource(args.file).catch(() => undefined);
  const { runPlan } = await import('../plan-runner.js');
  return runPlan(args, terminal, started, env);
}

export function planCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('plan')
    .description(
      'show what apply would change: placements, license use before → after, failover coverage',
    )
    .argument('[file]', 'the fleet spec (same as -f)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--out <plan.json>', 'save the plan for `vfleet apply plan.json`')
    .addOption(
      new Option('--format <format>', 'text, md (a pull request comment) or json').choices(
        PLAN_FORMATS,
      ),
    )
    .option('--json', 'print the plan as JSON (formatVersion 1): --format json', false)
    .option('--step-summary', 'also append the Markdown plan to $GITHUB_STEP_SUMMARY', false)
    .option('--detailed-exitcode', 'exit 2 when there are changes, 0 when there are none', false)
    .option('--explain <instance>', "show every host's verdict and score for one instance")
    .option('--destroy', 'plan the removal of every instance of the fleet (vfleet destroy)', false)
    .action(
      async (
        file: string | undefined,
        o: {
          file: string;
          out?: string;
          format?: PlanFormat;
          json: boolean;
          stepSummary: boolean;
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
              format: formatOf(o.format, o.json),
              stepSummary: o.stepSummary,
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

/** `--json` is `--format json`; with another --format it is a contradiction, not a choice. */
function formatOf(format: PlanFormat | undefined, json: boolean): PlanFormat {
  if (json && format !== undefined && format !== 'json') {
    throw new VfleetError(
      'usage',
      `--json is --format json, and --format ${format} asks for another: give one of them`,
    );
  }
  return json ? 'json' : (format ?? 'text');
}
