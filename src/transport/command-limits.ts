// How a command's run ends, the same for every transport (README.md, "Time limits, aborts and
// exit codes"): its time limit and its AbortSignal stop it with `command-timeout` (retryable) or
// `command-aborted`; a signal that ended it is reported as the exit code 128 + its number; a
// program that cannot be started is `command-failed`; and `withCommandTimeout` gives every
// command a fleet session runs a limit when it sets none. Each transport only kills in its own
// way: the local one its child's process group, the ssh one the remote process group over a
// channel of its own.
import { constants } from 'node:os';
import { VfleetError } from '../model/errors.js';
import type { ExecOptions, Transport } from './transport.js';

export interface CommandLimit {
  /** Rejects with the reason (timeout, abort) when the command is to be stopped; never resolves. */
  readonly stopped: Promise<never>;
  /** Clears the timer and the abort listener: call it once the command has ended. */
  dispose(): void;
}

/** The error of a command stopped by its caller's AbortSignal. */
export function commandAborted(host: string, program: string): VfleetError {
  return new VfleetError('command-aborted', `${host}: ${program} aborted`);
}

/**
 * The time limit (`options.timeoutMs`) and the abort (`options.signal`) of one command on
 * `host`. Throws `command-aborted` when the signal has fired already: nothing is to start.
 */
export function limitCommand(host: string, program: string, options: ExecOptions): CommandLimit {
  if (options.signal?.aborted) throw commandAborted(host, program);
  let fire: (reason: VfleetError) => void = () => undefined;
  const stopped = new Promise<never>((_, reject) => {
    fire = reject;
  });
  stopped.catch(() => undefined); // observed by whoever waits on it; never an unhandled rejection
  const timer =
    options.timeoutMs === undefined
      ? undefined
      : setTimeout(
          () =>
            fire(
              new VfleetError(
                'command-timeout',
                `${host}: ${program} ran longer than ${options.timeoutMs} ms and was killed`,
                { retryable: true },
              ),
            ),
          options.timeoutMs,
        );
  const onAbort = () => fire(commandAborted(host, program));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  return {
    stopped,
    dispose() {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    },
  };
}

/** The exit code a command reports: its own, or 128 + the number of the signal that ended it. */
export function exitStatus(code: number | null, signal: string | null | undefined): number {
  const bySignal = signal ? 128 + (constants.signals[signal as NodeJS.Signals] ?? 0) : 0;
  return code ?? bySignal;
}

/** The error of a program that could not be started (no such program, refused). */
export function cannotRun(
  host: string,
  program: string,
  why: string,
  options: { readonly cause?: unknown } = {},
): VfleetError {
  return new VfleetError('command-failed', `${host}: cannot run ${program}: ${why}`, options);
}

/**
 * The transport, with a time limit on every command that does not set its own: a command that
 * hangs on a host (a stuck mount, a dead NFS server) is killed and its job retried, instead of
 * holding a worker forever.
 */
export function withCommandTimeout(transport: Transport, timeoutMs: number): Transport {
  return {
    host: transport.host,
    exec: (argv, options = {}) =>
      transport.exec(argv, { ...options, timeoutMs: options.timeoutMs ?? timeoutMs }),
    readFile: (path) => transport.readFile(path),
    writeFile: (path, data, mode) => transport.writeFile(path, data, mode),
    createReadStream: (path) => transport.createReadStream(path),
    createWriteStream: (path, mode) => transport.createWriteStream(path, mode),
    connectUnixSocket: (path) => transport.connectUnixSocket(path),
    connectLoopbackPort: (port) => transport.connectLoopbackPort(port),
    close: () => transport.close(),
  };
}
