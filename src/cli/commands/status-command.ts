// `vfleet status`: hosts, instances with their generations and health, and drift (app/status.ts).
import { Command } from 'commander';
import { fleetStatus } from '../../app/status.js';
import { withSession } from '../open-session.js';
import type { Terminal } from '../terminal.js';
import { renderStatusJson, renderStatusText } from '../views/status-view.js';

/** Exit 0 (drift is shown, not an error). */
export function runStatus(
  args: { file: string; json: boolean },
  terminal: Terminal,
): Promise<number> {
  return withSession(args.file, terminal, async (session) => {
    const status = await fleetStatus(session);
    terminal.out(args.json ? renderStatusJson(status) : renderStatusText(status));
    return 0;
  });
}

export function statusCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('status')
    .description('hosts, instances with their generations and health, and drift from the spec')
    .argument('[file]', 'the fleet spec (same as -f)')
    .option('-f, --file <path>', 'the fleet spec', 'fleet.yaml')
    .option('--json', 'print JSON (formatVersion 1)', false)
    .action(async (file: string | undefined, o: { file: string; json: boolean }) => {
      setExit(await runStatus({ file: file ?? o.file, json: o.json }, terminal));
    });
}
