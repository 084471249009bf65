import { writeFileSync } from 'node:fs';
import { Command } from 'commander';
import { VfleetError } from '../../model/errors.js';
import type { ObservedState } from '../../model/observed.js';
import type { Plan } from '../../model/plan.js';
import { makeDestroyPlan } from '../../plan/destroy-plan.js';
import { makePlan } from '../../plan/make-plan.js';
import { serializePlan } from '../../plan/plan-file.js';
import { explain } from '../../scheduler/schedule.js';
import { type FleetSession, openFleet, planIdOf } from '../fleet-session.js';
import type { Terminal } from '../terminal.js';
import { renderExplanationText } from '../views/placement-view.js';
import { renderPlanText } from '../views/plan-view.js';

export interface PlanArgs {
  readonly file: string;
  readonly out: string | undefined;
  readonly json: boolean;
  readonly detailedExitcode: boolean;
  readonly explain: string | undefined;
  /** Plan the removal of every instance of the fleet (Terraform's `plan -destroy`). */
  readonly destroy: boolean;
}

/** The plan for a session's fleet against its current state. */
export async function currentPlan(
  session: FleetSession,
  explainInstance?: string,
  persist = false,
) {
  const observed = await session.observe(persist);
  refuseHostsGone(session, observed);
  const { placement, explanation } = explain(session.fleet, explainInstance ?? '', {
    instances: observed.instances,
  });
  const plan: Plan = makePlan(session.fleet, placement, observed, {
    id: planIdOf(session.specHash, observed.version),
    specHash: session.specHash,
  });
  return { plan, explanation, observed };
}

/**
 * The destroy plan for a session's fleet: every instance the refreshed state holds (recorded,
 * or reported by its host) removed. Refreshed as a plan is, so what a host no longer runs is
 * not destroyed twice and what it runs unrecorded is not left behind.
 */
export async function currentDestroyPlan(session: FleetSession, persist = false) {
  const observed = await session.observe(persist);
  refuseHostsGone(session, observed);
  const plan = makeDestroyPlan(session.fleet, observed, {
    id: planIdOf(session.specHash, observed.version, true),
    specHash: session.specHash,
  });
  return { plan, observed };
}

/**
 * Instances the state has on hosts the spec no longer names cannot be planned for: vfleet has
 * lost the way to reach those hosts, so it could neither move their disks nor destroy them, and
 * re-creating them elsewhere would leave two copies running. The error says how to retire a host
 * (drain, then remove) and how to give up on one that is gone for good (`host forget`).
 */
function refuseHostsGone(session: FleetSession, observed: ObservedState): void {
  const known = new Set(session.fleet.hosts.map((h) => h.name));
  const stranded = new Map<string, string[]>();
  for (const i of observed.instances) {
    if (known.has(i.host)) continue;
    stranded.set(i.host, [...(stranded.get(i.host) ?? []), i.instance]);
  }
  if (stranded.size === 0) return;
  const lines = [...stranded].map(([host, names]) => {
    const shown = names.slice(0, 5).join(', ');
    const more = names.length > 5 ? ` and ${names.length - 5} more` : '';
    return `  ${host}: ${shown}${more}`;
  });
  const first = [...stranded.keys()][0] as string;
  throw new VfleetError(
    'host-not-in-spec',
    [
      `the state has instances on hosts ${session.file} no longer names, and vfleet cannot reach those hosts to move or destroy them:`,
      ...lines,
      `To retire a host, put it back with \`drain: true\` and apply (its instances move off it), then remove it.`,
      `If it is gone for good, \`vfleet host forget ${first}\` drops its instances from the state, and the next apply creates them elsewhere.`,
    ].join('\n'),
  );
}

/** Exit 0, or with --detailed-exitcode 0 no changes / 2 changes; 1 on error. */
export async function runPlanCommand(args: PlanArgs, terminal: Terminal): Promise<number> {
  if (args.destroy && args.explain !== undefined)
    throw new VfleetError('usage', '--explain shows a placement; a --destroy plan places nothing');
  const session = await openFleet(args.file, terminal);
  if (!session) return 1;
  try {
    const { plan, explanation } = args.destroy
      ? { ...(await currentDestroyPlan(session)), explanation: undefined }
      : await currentPlan(session, args.explain);
    for (const w of await session.factsWarnings()) terminal.err(`Warning: ${w}`);
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
  } finally {
    await session.close();
  }
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
