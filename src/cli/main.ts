// The vfleet command line: commander wiring and the one error boundary (habit 8, docs/architecture.md), which
// turns a VfleetError into its message and exit code and never shows a user a stack trace.
// Everything this process prints passes through redact() (src/state/redact.ts): the terminal,
// the error boundary, what libraries print with console.*, and a rejection nobody handled.
import { readFileSync } from 'node:fs';
import { format } from 'node:util';
import { Command, CommanderError } from 'commander';
import { isVfleetError } from '../model/errors.js';
import { redact, redactedMessage } from '../state/redact.js';
import { lostStore } from '../state/store-loss.js';
import { writeRefusal } from '../state/write-refusal.js';
import { processTerminal, safeTerminal, type Terminal } from './terminal.js';

type CommandFactory = (terminal: Terminal, setExit: (code: number) => void) => Command;

/**
 * The commands, in the order help lists them, each loaded when needed: `vfleet validate` does
 * not load ioredis, BullMQ or ssh2, and `--version` loads none of them.
 */
const COMMANDS: ReadonlyArray<readonly [string, () => Promise<CommandFactory>]> = [
  ['validate', async () => (await import('./commands/validate-command.js')).validateCommand],
  ['schedule', async () => (await import('./commands/schedule-command.js')).scheduleCommand],
  ['plan', async () => (await import('./commands/plan-command.js')).planCommand],
  ['apply', async () => (await import('./commands/apply-command.js')).applyCommand],
  ['destroy', async () => (await import('./commands/destroy-command.js')).destroyCommand],
  ['audit', async () => (await import('./commands/audit-command.js')).auditCommand],
  ['status', async () => (await import('./commands/status-command.js')).statusCommand],
  ['host', async () => (await import('./commands/host-command.js')).hostCommand],
  [
    'force-unlock',
    async () => (await import('./commands/force-unlock-command.js')).forceUnlockCommand,
  ],
  ['worker', async () => (await import('./commands/worker-command.js')).workerCommand],
  ['controller', async () => (await import('./commands/controller-command.js')).controllerCommand],
  ['events', async () => (await import('./commands/events-command.js')).eventsCommand],
  ['suspend', async () => (await import('./commands/sync-command.js')).suspendCommand],
  ['resume', async () => (await import('./commands/sync-command.js')).resumeCommand],
  ['reconcile', async () => (await import('./commands/sync-command.js')).reconcileCommand],
  ['down', async () => (await import('./commands/down-command.js')).downCommand],
];

/** vfleet's version, from the package.json above this module (dist/src/cli/ or the bundle's dist/cli/). */
function version(): string {
  for (const up of ['../../../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8'));
      if (pkg.name === 'vfleet') return String(pkg.version);
    } catch {
      // not this one
    }
  }
  return 'unknown';
}

/**
 * The program with every command, or with only `only` (the command the arguments name): help and
 * an unknown command's suggestions need them all, a command only itself.
 */
export async function buildProgram(
  unsafe: Terminal,
  setExit: (code: number) => void,
  only?: string,
): Promise<Command> {
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
  const wanted = COMMANDS.filter(([name]) => only === undefined || name === only);
  const factories = await Promise.all(wanted.map(([, load]) => load()));
  for (const factory of factories) {
    program.addCommand(
      factory(terminal, setExit)
        .exitOverride()
        .configureOutput({
          writeOut: (s) => terminal.out(s),
          writeErr: (s) => terminal.err(s),
        }),
    );
  }
  return program;
}

/** The command the arguments name, when they name one (else help or an error needs them all). */
function commandNamed(argv: readonly string[]): string | undefined {
  const first = argv[0];
  // The version alone needs no command at all.
  if (argv.length === 1 && (first === '--version' || first === '-V')) return '';
  if (first === undefined || first.startsWith('-')) return undefined;
  return COMMANDS.some(([name]) => name === first) ? first : undefined;
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
  const program = await buildProgram(
    terminal,
    (code) => {
      exitCode = code;
    },
    commandNamed(argv),
  );
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
    // Redis answers but refuses writes (out of memory, a disk full): the cause and the fix.
    const refused = writeRefusal(e);
    if (refused !== undefined) {
      terminal.err(`vfleet: ${refused.message}`);
      return refused.exitCode;
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
