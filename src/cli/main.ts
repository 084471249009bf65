// The vfleet command line: commander wiring and the one error boundary (STYLE.md #8), which
// turns a VfleetError into its message and exit code and never shows a user a stack trace.
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { isVfleetError } from '../model/errors.js';
import { applyCommand } from './commands/apply-command.js';
import { auditCommand } from './commands/audit-command.js';
import { downCommand } from './commands/down-command.js';
import { planCommand } from './commands/plan-command.js';
import { scheduleCommand } from './commands/schedule-command.js';
import { forceUnlockCommand, hostCommand, statusCommand } from './commands/status-command.js';
import { validateCommand } from './commands/validate-command.js';
import { workerCommand } from './commands/worker-command.js';
import { processTerminal, safeTerminal, type Terminal } from './terminal.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
  return String(pkg.version);
}

export function buildProgram(unsafe: Terminal, setExit: (code: number) => void): Command {
  const terminal = safeTerminal(unsafe);
  const program = new Command('vfleet')
    .description('Infrastructure as code for fleets of virtual machines and sandboxes')
    .version(version())
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => terminal.out(s),
      writeErr: (s) => terminal.err(s),
    });
  for (const command of [
    validateCommand(terminal, setExit),
    scheduleCommand(terminal, setExit),
    planCommand(terminal, setExit),
    applyCommand(terminal, setExit),
    auditCommand(terminal, setExit),
    statusCommand(terminal, setExit),
    hostCommand(terminal, setExit),
    forceUnlockCommand(terminal, setExit),
    workerCommand(terminal, setExit),
    downCommand(terminal, setExit),
  ]) {
    program.addCommand(
      command.exitOverride().configureOutput({
        writeOut: (s) => terminal.out(s),
        writeErr: (s) => terminal.err(s),
      }),
    );
  }
  return program;
}

export async function main(
  argv: readonly string[],
  unsafe: Terminal = processTerminal,
): Promise<number> {
  const terminal = safeTerminal(unsafe);
  let exitCode = 0;
  const program = buildProgram(terminal, (code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors were already printed.
      return e.exitCode === 0 ? 0 : 1;
    }
    if (isVfleetError(e)) {
      terminal.err(`vfleet: ${e.message}`);
      return e.exitCode;
    }
    // A bug in vfleet, not a user mistake: keep the stack, it is what a bug report needs.
    terminal.err(`vfleet: internal error: ${(e as Error)?.stack ?? String(e)}`);
    return 70;
  }
}
