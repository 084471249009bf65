import { Command } from 'commander';
import { downPrivateRedis } from '../../app/down.js';
import type { Terminal } from '../terminal.js';
import { renderDownText } from '../views/down-view.js';
import { jsonDocument } from '../views/json.js';

export interface DownArgs {
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  readonly force?: boolean;
  readonly json?: boolean;
}

/**
 * Stops the private redis-server of the folder (its AOF is flushed first, its data kept).
 * A Redis named by REDIS_URL is not vfleet's to stop. Refused (exit 1) while a live apply holds a
 * fleet lock on it, unless --force. Exit 0, also when nothing runs.
 */
export async function runDown(args: DownArgs, terminal: Terminal): Promise<number> {
  const debug = args.env.VFLEET_DEBUG
    ? (message: string) => terminal.err(`vfleet: debug: ${message}`)
    : undefined;
  const result = await downPrivateRedis({
    cwd: args.cwd,
    env: args.env,
    force: args.force === true,
    ...(debug ? { debug } : {}),
  });
  terminal.out(args.json ? jsonDocument({ ...result }) : renderDownText(result));
  return 0;
}

export function downCommand(terminal: Terminal, setExit: (code: number) => void): Command {
  return new Command('down')
    .description("stop this folder's private redis-server (started when REDIS_URL is not set)")
    .option('--force', 'stop it even while an apply holds a fleet lock on it')
    .option('--json', 'print JSON (formatVersion 1)', false)
    .action(async (options: { force?: boolean; json: boolean }) => {
      setExit(
        await runDown(
          {
            cwd: process.cwd(),
            env: process.env,
            force: options.force === true,
            json: options.json,
          },
          terminal,
        ),
      );
    });
}
