import { Command } from 'commander';
import { readAndLoadFleet } from '../../app/read-spec.js';
import { countBySeverity } from '../../model/diagnostic.js';
import { explain, schedule } from '../../scheduler/schedule.js';
import type { Terminal } from '../terminal.js';
import { renderValidate } from '../views/diagnostics-view.js';
import {
  renderExplanationText,
  renderPlacementJson,
  renderPlacementText,
} from '../views/placement-view.js';

export interface ScheduleArgs {
  readonly file: string;
  readonly json: boolean;
  readonly explain: string | undefined;
}

/**
 * Places the spec's instances on an empty fleet: the scheduler alone, without the state (a
 * debugging tool; `plan` places against what the fleet runs).
 * Exit 0 when everything is placed (and covered), 2 when some instance is not, 1 on error.
 */
export function runSchedule(args: ScheduleArgs, terminal: Terminal): number {
  const loaded = readAndLoadFleet(args.file);
  if (!loaded.fleet || countBySeverity(loaded.diagnostics).errors > 0) {
    terminal.err(
      renderValidate('text', {
        file: args.file,
        diagnostics: loaded.diagnostics,
        fleet: undefined,
      }),
    );
    return 1;
  }
  const result = args.explain
    ? explain(loaded.fleet, args.explain)
    : { placement: schedule(loaded.fleet), explanation: undefined };
  const { placement, explanation } = result;
  if (args.json) terminal.out(renderPlacementJson(placement, explanation));
  else if (args.explain) terminal.out(renderExplanationText(explanation, args.explain));
  else terminal.out(renderPlacementText(loaded.fleet.name, placement));
  if (args.explain && !explanation) return 1;
  const complete =
    placement.unplaceable.length === 0 &&
    placement.failover.covered === placement.failover.protected;
  return complete ? 0 : 2;
}

export function scheduleCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('schedule')
    .description("place the spec's instances on its hosts and show where, why, and what it costs")
    .argument('[file]', 'the fleet spec (same as -f)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--json', 'print the placement as JSON (formatVersion 1)', false)
    .option('--explain <instance>', "show every host's verdict and score for one instance")
    .action(
      (file: string | undefined, options: { file: string; json: boolean; explain?: string }) => {
        setExit(
          runSchedule(
            { file: file ?? options.file, json: options.json, explain: options.explain },
            terminal,
          ),
        );
      },
    );
}
