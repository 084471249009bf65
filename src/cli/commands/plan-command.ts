// `vfleet plan`: refresh, schedule, diff (app/plan.ts), shown as text, Markdown (a pull request
// comment) or JSON, saved with --out, appended to a GitHub step summary with --step-summary.
import { writeFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { planFleet } from '../../app/plan.js';
import type { FleetSession } from '../../app/session.js';
import { VfleetError } from '../../model/errors.js';
import { serializePlan } from '../../plan/plan-file.js';
import { withSession } from '../open-session.js';
import { appendStepSummary, stepSummaryFile } from '../step-summary.js';
import type { Terminal } from '../terminal.js';
import { renderExplanationText } from '../views/placement-view.js';
import { renderPlanMarkdown } from '../views/plan-markdown-view.js';
import { healthWarnings, renderPlanText } from '../views/plan-view.js';

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
export function runPlanCommand(
  args: PlanArgs,
  terminal: Terminal,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const summaryFile = args.stepSummary ? stepSummaryFile(env) : undefined;
  const read = async (session: FleetSession) => {
    const { plan, explanation, health } = await planFleet(session, {
      destroy: args.destroy,
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
