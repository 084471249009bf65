// `vfleet apply [fleet.yaml | plan.json]`: take the fleet to its spec, or run a saved plan, through
// the host queues (cli/apply-runner.ts, app/apply.ts).
import { Command } from 'commander';
import { VfleetError } from '../../model/errors.js';
import { takeoverMsFrom } from '../../queue/worker-lock.js';
import { runApply } from '../apply-runner.js';
import type { Terminal } from '../terminal.js';

export function applyCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('apply')
    .description('take the fleet to the spec (or apply a saved plan) through the host queues')
    .argument('[target]', 'the fleet spec, or a plan saved with vfleet plan --out (same as -f)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--auto-approve', 'apply without asking', false)
    .option('--workers <n>', 'jobs each host runs at once', (v) => Number.parseInt(v, 10), 4)
    .option('--external-workers', 'vfleet worker processes serve the queues: run none here', false)
    .option(
      '--json',
      'print only JSON lines (formatVersion 1): the plan, each action, the result',
      false,
    )
    .action(
      async (
        target: string | undefined,
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
        setExit(
          await runApply(
            {
              target: target ?? o.file,
              spec: o.file,
              autoApprove: o.autoApprove,
              concurrency: o.workers,
              externalWorkers: o.externalWorkers,
              takeoverMs: takeoverMsFrom(process.env),
              json: o.json,
            },
            terminal,
          ),
        );
      },
    );
}
