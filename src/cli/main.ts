// The vfleet command line: commander wiring and the one error boundary (habit 8, docs/architecture.md), which
// turns a VfleetError into its message and exit code and never shows a user a stack trace.
// Everything this process prints passes through redact() (src/state/redact.ts): the terminal,
// the error boundary, what libraries print with console.*, and a rejection nobody handled.
import { readFileSync } from 'node:fs';
import { format } from 'node:util';
import { Command, CommanderError } from 'commander';
import { isVfleetError } from '../model/errors.js';
import { redact, redactedMessage } from '../state/redact.js';
import { lostStore } from '../state/redis-clients.js';
import { applyCommand } from './commands/apply-command.js';
import { auditCommand } from './commands/audit-command.js';
import { destroyCommand } from './commands/destroy-command.js';
import { downCommand } from './commands/down-command.js';
import { forceUnlockCommand } from './commands/force-unlock-command.js';
import { hostCommand } from './commands/host-command.js';
import { planCommand } from './commands/plan-command.js';
import { scheduleCommand } from './commands/schedule-command.js';
import { statusCommand } from './commands/status-command.js';
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
    destroyCommand(terminal, setExit),
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

let guarded = false;

/**
 * What escapes every handler still goes out redacted, in one line when it is about Redis.
 * Libraries print with console.* (BullMQ's console.error of an error nobody listens to, ioredis's
 * warnings), and Node would print a rejection nobody handled with its stack and its properties —
 * an ioredis error's include the AUTH arguments.
 */
function guardProcess(terminal: Terminal): void {
  if (guarded) return;
  guarded = true;
  for (const level of ['log', 'info', 'debug', 'warn', 'error'] as const) {
    const print = level === 'log' || level === 'info' ? terminal.out : terminal.err;
    console[level] = (...args: unknown[]) => print(redact(format(...args)));
  }
  const escaped = (e: unknown) => {
    // Once the store is gone, the errors of requests cut short say nothing more than the one
    // line the command prints about it.
    if (lostStore() !== undefined || isRedisConnectionError(e)) return;
    terminal.err(`vfleet: internal error: ${redact((e as Error)?.stack ?? String(e))}`);
    process.exit(70);
  };
  process.on('unhandledRejection', escaped);
  process.on('uncaughtException', escaped);
}

/** An error of the Redis connection itself (not of vfleet): closed, refused, reset, timed out. */
function isRedisConnectionError(e: unknown): boolean {
  const error = e as { name?: unknown; code?: unknown; syscall?: unknown; message?: unknown };
  if (error === null || typeof error !== 'object') return false;
  return (
    /^(MaxRetriesPerRequestError|ReplyError|SimpleError|ParserError)$/.test(String(error.name)) ||
    /^(connect|read|write)$/.test(String(error.syscall)) ||
    /^Connection is closed\.?$/.test(String(error.message))
  );
}

export async function main(
  argv: readonly string[],
  unsafe: Terminal = processTerminal,
): Promise<number> {
  const terminal = safeTerminal(unsafe);
  guardProcess(terminal);
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
      terminal.err(`vfleet: ${redact(e.message)}`);
      return e.exitCode;
    }
    // A request cut short by a store that went away: the store's one line, not the request's.
    const lost = lostStore();
    if (lost !== undefined) {
      terminal.err(`vfleet: ${lost.message}`);
      return lost.exitCode;
    }
    if (isRedisConnectionError(e)) {
      terminal.err(`vfleet: Redis: ${redactedMessage(e)}`);
      return 1;
    }
    // A bug in vfleet, not a user mistake: keep the stack, it is what a bug report needs.
    terminal.err(`vfleet: internal error: ${redact((e as Error)?.stack ?? String(e))}`);
    return 70;
  }
}
