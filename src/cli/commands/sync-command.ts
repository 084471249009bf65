// `vfleet suspend [--reason TEXT]`, `vfleet resume`, `vfleet reconcile --now` (app/sync.ts): the
// controller's sync from the outside, as Flux's `suspend`/`resume`/`reconcile` are.
import { userInfo } from 'node:os';
import { Command } from 'commander';
import { requestReconcile, resumeSync, suspendSync } from '../../app/sync.js';
import { VfleetError } from '../../model/errors.js';
import { withSession } from '../open-session.js';
import type { Terminal } from '../terminal.js';
import { jsonDocument } from '../views/json.js';

export function suspendCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('suspend')
    .description(
      'stop the controller applying changes to the fleet (restarts of lost hosts go on) until `vfleet resume`',
    )
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--reason <text>', 'why, shown in status and events', 'suspended by an operator')
    .option('--json', 'print JSON (formatVersion 1)', false)
    .action(async (o: { file: string; reason: string; json: boolean }) => {
      const reason = o.reason.replace(/[\0-\x1f\x7f]/g, ' ').slice(0, 200);
      setExit(
        await withSession(o.file, terminal, async (session) => {
          await suspendSync(session, userInfo().username, reason, Date.now());
          terminal.out(
            o.json
              ? jsonDocument({ fleet: session.fleet.name, suspended: true, reason })
              : `Fleet ${session.fleet.name} suspended: the controller reports drift and restarts lost hosts' instances, and applies nothing else until \`vfleet resume\`.`,
          );
          return 0;
        }),
      );
    });
}

export function resumeCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('resume')
    .description('let the controller apply changes again (after `vfleet suspend`)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--json', 'print JSON (formatVersion 1)', false)
    .action(async (o: { file: string; json: boolean }) => {
      setExit(
        await withSession(o.file, terminal, async (session) => {
          const was = await resumeSync(session);
          terminal.out(
            o.json
              ? jsonDocument({ fleet: session.fleet.name, suspended: false, wasSuspended: was })
              : was
                ? `Fleet ${session.fleet.name} resumed: the controller reconciles at its next tick.`
                : `Fleet ${session.fleet.name} was not suspended.`,
          );
          return 0;
        }),
      );
    });
}

export function reconcileCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('reconcile')
    .description(
      'ask the running controllers to reconcile now (a git source fetches first), as a forge webhook does',
    )
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--now', 'now, not at the next interval (required: the only mode)', false)
    .option('--json', 'print JSON (formatVersion 1)', false)
    .action(async (o: { file: string; now: boolean; json: boolean }) => {
      if (!o.now)
        throw new VfleetError(
          'usage',
          'vfleet reconcile needs --now (the controller reconciles every --interval by itself)',
        );
      setExit(
        await withSession(o.file, terminal, async (session) => {
          const request = await requestReconcile(session);
          terminal.out(
            o.json
              ? jsonDocument({ fleet: session.fleet.name, request })
              : `Asked the controllers of ${session.fleet.name} to reconcile now (request ${request}); \`vfleet events --follow\` shows it.`,
          );
          return 0;
        }),
      );
    });
}
