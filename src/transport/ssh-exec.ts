// Commands over ssh (README.md, "How a command is killed on OpenSSH"): every command runs through
// a fixed /bin/sh wrapper that reports the command's pid first, then execs it; the pid is the
// process group sshd made for the session, so a timeout or an abort (command-limits.ts), or a
// reconnect after a drop (ssh-connection.ts), kills the whole group over a channel kept for
// kills. (OpenSSH's "signal" channel request is no substitute: sshd refuses it for root logins,
// which run without privilege separation.) At most the given slots' number of commands hold a
// channel at once; the rest wait in order.
import type { ClientChannel } from 'ssh2';
import { VfleetError } from '../model/errors.js';
import { ChannelSlots } from './channel-slots.js';
import { type CommandLimit, cannotRun, exitStatus, limitCommand } from './command-limits.js';
import { posixCommandLine } from './posix-quote.js';
import {
  type Connection,
  neverSent,
  type SshClient,
  type SshConnection,
} from './ssh-connection.js';
import type { ExecOptions, ExecResult } from './transport.js';

/**
 * The wrapper every command runs in, as `/bin/sh -c WRAPPER vfleet argv…`. It prints one header
 * line on stdout before anything of the command's: `vfleet-exec <pid>` then execs the command in
 * place (so the pid, which sshd made a session and process group leader, stays the command's),
 * or `vfleet-missing <pid>` when there is no such program, so that case is an error here as it
 * is for the local transport instead of an exit code 127 that the program might also return.
 */
const WRAPPER =
  'if command -v -- "$1" >/dev/null 2>&1; then echo "vfleet-exec $$"; exec "$@"; fi; ' +
  'echo "vfleet-missing $$"; exit 127';
/** Kills the process groups given as arguments; a group that is gone already is no error. */
const KILLER = 'for g do kill -s KILL -- "-$g" 2>/dev/null; done; exit 0';
const HEADER = /(?:^|\n)vfleet-(exec|missing) (\d+)\n/;
/** Noise a login shell's rc files print before the header is dropped, up to this much. */
const HEADER_SEARCH_LIMIT = 64 * 1024;
/**
 * Linux's MAX_ARG_STRLEN: sshd hands the whole command line to the login shell as ONE argument
 * (`$SHELL -c LINE`), so no single string exec(2) takes may be longer, NUL included.
 */
const MAX_COMMAND_LINE_BYTES = 128 * 1024 - 1;
/** A refused channel open (sshd over MaxSessions for an instant) is tried this many times. */
const OPEN_ATTEMPTS = 20;

interface ExecChannel {
  readonly stream: ClientChannel;
  /** The exit status, 128 + n for a signal; undefined until (unless) the server sends it. */
  readonly exit: { code?: number };
}

export class SshExec {
  readonly #connection: SshConnection;
  /** Commands; the SFTP session and kills have a channel each besides (see maxSessions). */
  readonly #slots: ChannelSlots;
  readonly #killSlot = new ChannelSlots(1);
  /** How long a killed command may take to report its end before its channel is closed (ms). */
  readonly #killGraceMs: number;

  constructor(connection: SshConnection, slots: ChannelSlots, killGraceMs: number) {
    this.#connection = connection;
    this.#slots = slots;
    this.#killGraceMs = killGraceMs;
  }

  get #host(): string {
    return this.#connection.host;
  }

  async exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const program = argv[0];
    if (program === undefined) throw new Error('exec: empty argv');
    const line = posixCommandLine(['exec', '/bin/sh', '-c', WRAPPER, 'vfleet', ...argv]);
    if (Buffer.byteLength(line) > MAX_COMMAND_LINE_BYTES) {
      throw new VfleetError(
        'command-too-long',
        `${this.#host}: ${program}: the quoted command line is longer than ${MAX_COMMAND_LINE_BYTES} bytes`,
      );
    }
    const limit = limitCommand(this.#host, program, options); // throws when aborted already
    try {
      const release = await this.#slots.acquire(limit.stopped);
      try {
        return await this.#run(line, program, options.stdin, limit);
      } finally {
        release();
      }
    } finally {
      limit.dispose();
    }
  }

  async #run(
    line: string,
    program: string,
    stdin: string | Buffer | undefined,
    limit: CommandLimit,
  ): Promise<ExecResult> {
    let conn = await Promise.race([this.#connection.get(), limit.stopped]);
    let channel: ExecChannel;
    try {
      channel = await this.#open(conn, line, limit.stopped);
    } catch (e) {
      if (!neverSent(e)) throw this.#openError(conn, program, e);
      // The drop happened before this command reached the server: send it on a new connection.
      this.#connection.discard(conn);
      conn = await Promise.race([this.#connection.get(), limit.stopped]);
      try {
        channel = await this.#open(conn, line, limit.stopped);
      } catch (again) {
        throw this.#openError(conn, program, again);
      }
    }
    return this.#collect(conn, channel, program, stdin, limit);
  }

  /** An exec channel; an open that sshd refused (nothing ran) is tried again after a pause. */
  async #open(conn: Connection, line: string, stopped?: Promise<never>): Promise<ExecChannel> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await openExec(conn.client, line);
      } catch (e) {
        // sshd counts a closed channel down a moment after the client sees it closed, so an
        // open right after a close can meet "no more sessions" while the bound was kept.
        if ((e as { reason?: unknown }).reason === undefined || attempt >= OPEN_ATTEMPTS) throw e;
        const pause = new Promise((resolve) => setTimeout(resolve, 25 * attempt));
        await (stopped ? Promise.race([pause, stopped]) : pause);
      }
    }
  }

  #openError(conn: Connection, program: string, e: unknown): VfleetError {
    if (e instanceof VfleetError) return e; // the limit's timeout or abort
    if (conn.dead || neverSent(e)) {
      return this.#connection.lost(`starting ${program}`);
    }
    return cannotRun(this.#host, program, String(e), { cause: e });
  }

  #collect(
    conn: Connection,
    { stream, exit }: ExecChannel,
    program: string,
    stdin: string | Buffer | undefined,
    limit: CommandLimit,
  ): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let head = Buffer.alloc(0);
      let header: { kind: string; pid: number } | undefined;
      let stoppedBy: VfleetError | undefined;
      let graceTimer: NodeJS.Timeout | undefined;

      const kill = () => {
        if (!stoppedBy || !header || header.kind !== 'exec') return;
        this.kill(conn, [header.pid]).catch(() => undefined);
        // A command that cannot be killed, or a dead connection, must not hang the caller.
        graceTimer ??= setTimeout(() => stream.close(), this.#killGraceMs);
      };
      limit.stopped.catch((reason: VfleetError) => {
        stoppedBy = reason;
        if (header === undefined) {
          // Killed as soon as its pid is known; until then only the grace timer stands by.
          graceTimer ??= setTimeout(() => stream.close(), this.#killGraceMs);
        }
        kill();
      });

      stream.on('data', (chunk: Buffer) => {
        if (header) {
          stdout.push(chunk);
          return;
        }
        head = Buffer.concat([head, chunk]);
        const match = HEADER.exec(head.toString('latin1'));
        if (match) {
          header = { kind: match[1] as string, pid: Number(match[2]) };
          if (header.kind === 'exec') conn.running.add(header.pid);
          const rest = head.subarray(match.index + match[0].length);
          if (rest.length > 0) stdout.push(rest);
          kill();
        } else if (head.length > HEADER_SEARCH_LIMIT) {
          stream.close();
        }
      });
      stream.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
      stream.on('error', () => undefined); // the 'close' that follows reports it
      stream.once('close', () => {
        clearTimeout(graceTimer);
        if (header && !conn.dead) conn.running.delete(header.pid);
        if (stoppedBy) return reject(stoppedBy);
        if (exit.code === undefined) {
          return reject(this.#connection.lost(`${program} was running`));
        }
        if (header?.kind === 'missing') {
          return reject(cannotRun(this.#host, program, 'not found'));
        }
        if (header === undefined) {
          const said = Buffer.concat(stderr).toString('utf8').trim().split('\n').slice(-3);
          return reject(
            new VfleetError(
              'command-failed',
              `${this.#host}: the login shell did not start vfleet's /bin/sh wrapper for ${program} (a POSIX login shell is required)${said.length ? `: ${said.join('\n')}` : ''}`,
            ),
          );
        }
        resolve({ code: exit.code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) });
      });
      stream.end(stdin ?? '');
    });
  }

  /** Kills process groups over a channel of their own, reserved so that a full host still can. */
  async kill(conn: Connection, groups: readonly number[]): Promise<void> {
    if (groups.length === 0) return;
    const release = await this.#killSlot.acquire();
    try {
      const { stream } = await this.#open(
        conn,
        posixCommandLine(['exec', '/bin/sh', '-c', KILLER, 'vfleet-kill', ...groups.map(String)]),
      );
      await new Promise<void>((resolve) => {
        stream.on('error', () => undefined);
        stream.resume();
        stream.stderr.resume();
        stream.once('close', () => resolve());
        stream.end();
      });
    } finally {
      release();
    }
  }
}

/**
 * A session channel running `line`; rejects when the channel or the exec request is refused.
 * The exit listener is attached in ssh2's callback itself: the server's exit-status can arrive
 * in the same read as the exec reply, and ssh2 emits 'exit' as a plain event, before a promise
 * continuation could listen. (Output is a stream and waits for its reader.)
 */
function openExec(client: SshClient, line: string): Promise<ExecChannel> {
  return new Promise((resolve, reject) => {
    try {
      client.exec(line, (e, stream) => {
        if (e) return reject(e);
        const exit: { code?: number } = {};
        stream.on('exit', (code: number | null, signal?: string) => {
          exit.code = exitStatus(code, signal);
        });
        resolve({ stream, exit });
      });
    } catch (e) {
      reject(e); // "Not connected": thrown before anything was sent
    }
  });
}
