// `vfleet force-unlock <id>`: remove the fleet lock of an apply that is gone (app/hosts.ts).
import { Command } from 'commander';
import { forceUnlock } from '../../app/hosts.js';
import { withSession } from '../open-session.js';
import type { Terminal } from '../terminal.js';
import { jsonDocument } from '../views/json.js';

export function forceUnlockCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('force-unlock')
    .description('remove the fleet lock of an apply that is gone')
    .argument('<id>', 'the lock id the refused apply printed')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--json', 'print JSON (formatVersion 1)', false)
    .action(async (id: string, o: { file: string; json: boolean }) => {
      setExit(
        await withSession(o.file, terminal, async (session) => {
          const result = await forceUnlock(session, id);
          if (o.json) {
            terminal.out(jsonDocument({ lock: id, removed: result.ok, holder: result.holder }));
            return result.ok ? 0 : 1;
          }
          if (result.ok) {
            terminal.out(`Removed lock ${id} (pid ${result.holder.pid} on ${result.holder.host}).`);
            return 0;
          }
          terminal.err(
            result.holder
              ? `vfleet: the lock is held under ${result.holder.id}, not ${id}.`
              : 'vfleet: no lock is held.',
          );
          return 1;
        }),
      );
    });
}
