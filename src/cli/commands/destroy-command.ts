import { Command } from 'commander';
import { VfleetError } from '../../model/errors.js';
import {
  type ApplyOptionValues,
  applyArgsOf,
  runApply,
  withApplyOptions,
} from '../apply-runner.js';
import type { Terminal } from '../terminal.js';

/**
 * `vfleet destroy`, Terraform's: refresh, plan the removal of every instance of the fleet (the
 * state's and whatever its hosts report), show it like any plan, ask unless --auto-approve, and
 * run it through apply's path — the fleet lock, the host queues, the outcomes. Exit 0 when every
 * instance is gone (or there was none), 1 when an action failed or the destroy was refused.
 */
export function destroyCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return withApplyOptions(
    new Command('destroy')
      .description('remove every instance of the fleet through the host queues')
      .argument('[file]', 'the fleet spec (same as -f)'),
    'destroy',
  ).action(async (file: string | undefined, o: ApplyOptionValues) => {
    const spec = file ?? o.file;
    const args = applyArgsOf(spec, o);
    if (spec.endsWith('.json'))
      throw new VfleetError(
        'usage',
        `vfleet destroy takes a fleet spec; to run a saved destroy plan: vfleet apply ${spec}`,
      );
    setExit(await runApply({ ...args, spec, destroy: true }, terminal));
  });
}
