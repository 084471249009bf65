// `vfleet apply [fleet.yaml | plan.json]`: take the fleet to its spec, or run a saved plan, through
// the host queues (cli/apply-runner.ts, app/apply.ts).
import { Command } from 'commander';
import {
  type ApplyOptionValues,
  applyArgsOf,
  runApply,
  withApplyOptions,
} from '../apply-runner.js';
import type { Terminal } from '../terminal.js';

export function applyCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return withApplyOptions(
    new Command('apply')
      .description('take the fleet to the spec (or apply a saved plan) through the host queues')
      .argument('[target]', 'the fleet spec, or a plan saved with vfleet plan --out (same as -f)'),
    'apply',
  ).action(async (target: string | undefined, o: ApplyOptionValues) => {
    setExit(await runApply(applyArgsOf(target ?? o.file, o), terminal));
  });
}
