import { Command } from 'commander';
import { VfleetError } from '../../model/errors.js';
import { takeoverMsFrom } from '../../queue/worker-lock.js';
import { runApply } from '../apply-runner.js';
import type { Terminal } from '../terminal.js';

/**
 * `vfleet destroy`, Terraform's: refresh, plan the removal of every instance of the fleet (the
 * state's and whatever its hosts report), show it like any plan, ask unless --auto-approve, and
 * run it through apply's path — the fleet lock, the host queues, the outcomes. Exit 0 when every
 * instance is gone (or there was none), 1 when an action failed or the destroy was refused.
 */
export function destroyCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('destroy')
    .description('remove every instance of the fleet through the host queues')
    .argument('[file]', 'the fleet spec (same as -f)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--auto-approve', 'destroy without asking', false)
    .option('--workers <n>', 'jobs each host runs at once', (v) => Number.parseInt(v, 10), 4)
    .option('--external-workers', 'vfleet worker processes serve the queues: run none here', false)
    .option(
      '--json',
      'print only JSON lines (formatVersion 1): the plan, each action, the result',
      false,
    )
    .action(
      async (
        file: string | undefined,
        o: {
          file: string;
          autoApprove: boolean;
          workers: number;
          externalWorkers: boolean;
          json: boolean;
        },
      ) => {
        if (!Number.isInteger(o.workers) || o.workers < 1)
          throw new VfleetError('usage', '--workers takes a whole number ≥ 1');
        const spec = file ?? o.file;
        if (spec.endsWith('.json'))
          throw new VfleetError(
            'usage',
            `vfleet destroy takes a fleet spec; to run a saved destroy plan: vfleet apply ${spec}`,
          );
        setExit(
          await runApply(
            {
              target: spec,
              spec,
              autoApprove: o.autoApprove,
              concurrency: o.workers,
              externalWorkers: o.externalWorkers,
              takeoverMs: takeoverMsFrom(process.env),
              json: o.json,
              destroy: true,
            },
            terminal,
          ),
        );
      },
    );
}
