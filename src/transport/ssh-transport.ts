// The ssh transport: one ssh2 connection per host, opened lazily, reused, reopened after a
// drop; at most `maxSessions` channels on it at once (sshd's MaxSessions), the rest wait in
// order. The host key is pinned: a different key is refused during key exchange, before any
// authentication is sent. Every command runs through a fixed /bin/sh wrapper that reports the
// command's pid first, then execs it; the pid is the process group sshd made for the session,
// so a timeout, an abort, or a reconnect after a drop kills the whole group over another
// channel. (OpenSSH's "signal" channel request is no substitute: sshd refuses it for root
// logins, which run without privilege separation — see README.md.)
import { constants } from 'node:os';
import { type Duplex, finished, PassThrough, type Readable, Writable } from 'node:stream';
import type { ClientChannel, ConnectConfig, SFTPWrapper } from 'ssh2';
import ssh2 from 'ssh2';
import { VfleetError } from '../model/errors.js';
import type { Host, SshEndpoint } from '../model/fleet.js';
import { FILE_LIMITS, readBoundedFile } from './bounded-file.js';
import { ChannelSlots } from './channel-slots.js';
import { type PinnedHostKey, parsePinnedHostKey, sha256Fingerprint } from './host-key.js';
import { posixCommandLine } from './posix-quote.js';
import { temporaryPathFor } from './temporary-name.js';
import type { ExecOptions, ExecResult, Transport } from './transport.js';

const { Client, utils } = ssh2;
type SshClient = InstanceType<typeof Client>;

export interface SshTransportOptions {
  /**
   * Channels open at once on the connection (sshd's MaxSessions, default 10): one is the SFTP
   * session's, one is kept free for kills, the rest run commands. At least 3.
   */
  readonly maxSessions?: number;
  /** The TCP connect, key exchange and authentication together (ms). */
  readonly readyTimeoutMs?: number;
  /** SSH keepalives: a connection whose peer misses `keepaliveCountMax` of them is dropped. */
  readonly keepaliveIntervalMs?: number;
  readonly keepaliveCountMax?: number;
  /** How long a killed command may take to report its end before its channel is closed (ms). */
  readonly killGraceMs?: number;
}

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

interface Connection {
  readonly client: SshClient;
  dead: boolean;
  /** Process groups of the commands running on it, to kill after a drop. */
  readonly running: Set<number>;
  sftp?: Promise<SFTPWrapper>;
  /** Ends the SFTP session for whoever waits on it: ssh2 may not say so when the drop is ours. */
  endSftp?: () => void;
}

interface Stopper {
  /** Rejects with the reason (timeout, abort) when the command is to be stopped; never resolves. */
  readonly stopped: Promise<never>;
  dispose(): void;
}

function makeStopper(host: string, program: string, options: ExecOptions): Stopper {
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
  const onAbort = () => fire(new VfleetError('command-aborted', `${host}: ${program} aborted`));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  return {
    stopped,
    dispose() {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    },
  };
}

/** fs-style errors for SFTP statuses a caller acts on (ENOENT, EACCES), like the local transport. */
function fileError(host: string, operation: string, path: string, e: unknown): Error {
  const status = (e as { code?: unknown }).code;
  const errno = status === 2 ? 'ENOENT' : status === 3 ? 'EACCES' : undefined;
  const message = `${host}: ${operation} ${path}: ${e instanceof Error ? e.message : String(e)}`;
  if (errno) return Object.assign(new Error(message), { code: errno, path });
  return new VfleetError('sftp-failed', message, { cause: e });
}

const connectionLost = (host: string, endpoint: string, what: string) =>
  new VfleetError(
    'connection-lost',
    `${host} (${endpoint}): the connection dropped while ${what}`,
    { retryable: true },
  );

/** ssh2's words for "the request never left or never reached the server": safe to send again. */
const neverSent = (e: unknown) =>
  e instanceof Error && /^(Not connected|No response from server)$/.test(e.message);

/**
 * Who waits on each SFTP session, called when it ends: ssh2 takes requests on an ended session
 * and never answers them. One listener per session, not one per waiter.
 */
const sessionWaiters = new WeakMap<SFTPWrapper, Set<() => void> | 'ended'>();

/** Watches a new session's end; returns the way to end it for its waiters by hand. */
function watchSession(sftp: SFTPWrapper): () => void {
  sessionWaiters.set(sftp, new Set());
  const gone = () => {
    const waiting = sessionWaiters.get(sftp);
    sessionWaiters.set(sftp, 'ended');
    if (waiting instanceof Set) for (const waiter of waiting) waiter();
  };
  sftp.once('end', gone);
  sftp.once('close', gone);
  return gone;
}

/** Calls `ended` when the session ends (at once if it has); returns the way to stop waiting. */
function onSessionEnd(sftp: SFTPWrapper, ended: () => void): () => void {
  const waiting = sessionWaiters.get(sftp);
  if (waiting === 'ended') {
    ended();
    return () => undefined;
  }
  waiting?.add(ended);
  return () => waiting?.delete(ended);
}

/**
 * ssh2 never answers an SFTP request made after its session ended (a dropped connection), and
 * some operations make one on their way out (a write that failed closes its handle and waits
 * for the reply; our writeFile unlinks its temporary file): the work fails with the session
 * instead of waiting forever.
 */
function whileSessionLives<T>(
  sftp: SFTPWrapper,
  work: (sftp: SFTPWrapper) => Promise<T>,
  lost: () => VfleetError,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const stopWaiting = onSessionEnd(sftp, () => reject(lost()));
    Promise.resolve()
      .then(() => work(sftp))
      .then(resolve, reject)
      .finally(stopWaiting);
  });
}

export class SshTransport implements Transport {
  readonly host: string;
  readonly #ssh: SshEndpoint;
  readonly #pinned: PinnedHostKey;
  readonly #endpoint: string;
  readonly #options: Required<SshTransportOptions>;
  /** Commands; the SFTP session and kills have a channel each besides (see maxSessions). */
  readonly #slots: ChannelSlots;
  readonly #killSlot = new ChannelSlots(1);
  #live: Connection | undefined;
  #connecting: Promise<Connection> | undefined;
  /** Process groups left running by a dropped connection, killed first on the next one. */
  #orphans = new Set<number>();

  constructor(host: Host, options: SshTransportOptions = {}) {
    if (host.engine !== 'ssh' || host.ssh === undefined) {
      throw new VfleetError('invalid-host', `${host.name}: not an ssh host`);
    }
    this.host = host.name;
    this.#ssh = host.ssh;
    this.#endpoint = `${host.ssh.address}:${host.ssh.port}`;
    try {
      this.#pinned = parsePinnedHostKey(host.ssh.hostKey);
    } catch (e) {
      throw new VfleetError('invalid-host', `${host.name}: ${(e as Error).message}`);
    }
    this.#options = {
      maxSessions: options.maxSessions ?? 10,
      readyTimeoutMs: options.readyTimeoutMs ?? 20_000,
      keepaliveIntervalMs: options.keepaliveIntervalMs ?? 10_000,
      keepaliveCountMax: options.keepaliveCountMax ?? 3,
      killGraceMs: options.killGraceMs ?? 5_000,
    };
    if (this.#options.maxSessions < 3) {
      throw new Error('SshTransport: maxSessions must be at least 3 (SFTP, kills, commands)');
    }
    this.#slots = new ChannelSlots(this.#options.maxSessions - 2);
  }

  async exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const program = argv[0];
    if (program === undefined) throw new Error('exec: empty argv');
    const line = posixCommandLine(['exec', '/bin/sh', '-c', WRAPPER, 'vfleet', ...argv]);
    if (Buffer.byteLength(line) > MAX_COMMAND_LINE_BYTES) {
      throw new VfleetError(
        'command-too-long',
        `${this.host}: ${program}: the quoted command line is longer than ${MAX_COMMAND_LINE_BYTES} bytes`,
      );
    }
    if (options.signal?.aborted) {
      throw new VfleetError('command-aborted', `${this.host}: ${program} aborted`);
    }
    const stopper = makeStopper(this.host, program, options);
    try {
      const release = await this.#slots.acquire(stopper.stopped);
      try {
        return await this.#run(line, program, options.stdin, stopper);
      } finally {
        release();
      }
    } finally {
      stopper.dispose();
    }
  }

  async #run(
    line: string,
    program: string,
    stdin: string | Buffer | undefined,
    stopper: Stopper,
  ): Promise<ExecResult> {
    let conn = await Promise.race([this.#connection(), stopper.stopped]);
    let channel: ExecChannel;
    try {
      channel = await this.#open(conn, line, stopper.stopped);
    } catch (e) {
      if (!neverSent(e)) throw this.#openError(conn, program, e);
      // The drop happened before this command reached the server: send it on a new connection.
      this.#discard(conn);
      conn = await Promise.race([this.#connection(), stopper.stopped]);
      try {
        channel = await this.#open(conn, line, stopper.stopped);
      } catch (again) {
        throw this.#openError(conn, program, again);
      }
    }
    return this.#collect(conn, channel, program, stdin, stopper);
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
    if (e instanceof VfleetError) return e; // the stopper's timeout or abort
    if (conn.dead || neverSent(e)) {
      return connectionLost(this.host, this.#endpoint, `starting ${program}`);
    }
    return new VfleetError('command-failed', `${this.host}: cannot run ${program}: ${e}`, {
      cause: e,
    });
  }

  #collect(
    conn: Connection,
    { stream, exit }: ExecChannel,
    program: string,
    stdin: string | Buffer | undefined,
    stopper: Stopper,
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
        this.#kill(conn, [header.pid]).catch(() => undefined);
        // A command that cannot be killed, or a dead connection, must not hang the caller.
        graceTimer ??= setTimeout(() => stream.close(), this.#options.killGraceMs);
      };
      stopper.stopped.catch((reason: VfleetError) => {
        stoppedBy = reason;
        if (header === undefined) {
          // Killed as soon as its pid is known; until then only the grace timer stands by.
          graceTimer ??= setTimeout(() => stream.close(), this.#options.killGraceMs);
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
          return reject(connectionLost(this.host, this.#endpoint, `${program} was running`));
        }
        if (header?.kind === 'missing') {
          return reject(
            new VfleetError('command-failed', `${this.host}: cannot run ${program}: not found`),
          );
        }
        if (header === undefined) {
          const said = Buffer.concat(stderr).toString('utf8').trim().split('\n').slice(-3);
          return reject(
            new VfleetError(
              'command-failed',
              `${this.host}: the login shell did not start vfleet's /bin/sh wrapper for ${program} (a POSIX login shell is required)${said.length ? `: ${said.join('\n')}` : ''}`,
            ),
          );
        }
        resolve({ code: exit.code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) });
      });
      stream.end(stdin ?? '');
    });
  }

  /** Kills process groups over a channel of their own, reserved so that a full host still can. */
  async #kill(conn: Connection, groups: readonly number[]): Promise<void> {
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

  #connection(): Promise<Connection> {
    if (this.#live && !this.#live.dead) return Promise.resolve(this.#live);
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<Connection> {
    const credentials = await this.#credentials();
    const client = new Client();
    const conn: Connection = { client, dead: false, running: new Set() };
    await new Promise<void>((resolve, reject) => {
      let ready = false;
      let presented: string | undefined;
      const fail = (error: VfleetError) => {
        if (ready) return;
        ready = true; // settle once
        client.end();
        reject(error);
      };
      client.once('ready', () => {
        if (ready) return;
        ready = true;
        resolve();
      });
      client.on('error', (e: Error & { level?: string; code?: string }) => {
        if (presented !== undefined) {
          return fail(
            new VfleetError(
              'host-key-mismatch',
              `${this.host} (${this.#endpoint}): the host key presented, ${presented}, is not the pinned ${this.#pinned.fingerprint}; refusing to connect`,
            ),
          );
        }
        if (e.level === 'handshake' && /host key format/.test(e.message)) {
          return fail(
            new VfleetError(
              'host-key-mismatch',
              `${this.host} (${this.#endpoint}): the host offers no key of the pinned kind (${this.#pinned.algorithms?.join(', ')}), so not the pinned ${this.#pinned.fingerprint}; refusing to connect`,
            ),
          );
        }
        if (e.level === 'client-authentication') {
          return fail(
            new VfleetError(
              'ssh-auth-failed',
              `${this.host}: authentication as ${this.#ssh.user}@${this.#endpoint} failed (${credentials.agent ? 'ssh-agent keys' : this.#ssh.identityFile})`,
            ),
          );
        }
        const why = e.level === 'client-timeout' ? e.message : (e.code ?? e.message);
        fail(
          new VfleetError('host-unreachable', `${this.host} (${this.#endpoint}): ${why}`, {
            retryable: true,
          }),
        );
      });
      client.on('close', () => {
        this.#discard(conn);
        fail(
          new VfleetError(
            'host-unreachable',
            `${this.host} (${this.#endpoint}): the connection closed during the handshake`,
            { retryable: true },
          ),
        );
      });
      const config: ConnectConfig = {
        host: this.#ssh.address,
        port: this.#ssh.port,
        username: this.#ssh.user,
        ...credentials,
        // Before authentication: a key that is not the pinned one ends the handshake here.
        hostVerifier: (blob: Buffer) => {
          if (this.#pinned.matches(blob)) return true;
          presented = sha256Fingerprint(blob);
          return false;
        },
        keepaliveInterval: this.#options.keepaliveIntervalMs,
        keepaliveCountMax: this.#options.keepaliveCountMax,
        readyTimeout: this.#options.readyTimeoutMs,
      };
      if (this.#pinned.algorithms) {
        config.algorithms = {
          serverHostKey: [...this.#pinned.algorithms] as NonNullable<
            ConnectConfig['algorithms']
          >['serverHostKey'],
        };
      }
      client.connect(config);
      // Every SFTP write and channel request waits for its reply: with Nagle's algorithm on,
      // the tail of each request sat until the server's delayed ACK (40 ms on Linux), which
      // made uploads 12 times slower than downloads and every exec 20-40 ms slower.
      client.setNoDelay(true);
    });
    if (this.#orphans.size > 0) {
      // Commands that were running when the last connection dropped may still run (sshd does
      // not stop a session's processes when its client goes): stop them before anything new.
      const groups = [...this.#orphans];
      try {
        await this.#kill(conn, groups);
        for (const group of groups) this.#orphans.delete(group);
      } catch {
        // Dropped again: they stay orphans for the next connection.
      }
    }
    this.#live = conn; // only now: no command may start before the orphans are gone
    return conn;
  }

  /** A connection that dropped (or is found dead): its running commands become orphans. */
  #discard(conn: Connection): void {
    conn.dead = true;
    conn.endSftp?.();
    for (const group of conn.running) this.#orphans.add(group);
    conn.running.clear();
    conn.client.destroy();
  }

  /** The identity file, read now (a rotated key is picked up), or the ssh-agent. */
  async #credentials(): Promise<{ privateKey?: Buffer; agent?: string }> {
    const path = this.#ssh.identityFile;
    if (path === undefined) {
      const agent = process.env.SSH_AUTH_SOCK;
      if (!agent) {
        throw new VfleetError(
          'ssh-agent-unavailable',
          `${this.host}: no identityFile and SSH_AUTH_SOCK is not set`,
        );
      }
      return { agent };
    }
    const read = await readBoundedFile(path, FILE_LIMITS.identity);
    if (!read.ok) {
      throw new VfleetError(
        'identity-unreadable',
        `${this.host}: cannot read identityFile ${path}: it ${read.reason}`,
      );
    }
    const privateKey = read.bytes;
    // Parsed here so that a bad file is reported by its path alone: ssh2's own parse errors are
    // not promised to leave the key's text out.
    const parsed = utils.parseKey(privateKey);
    if (parsed instanceof Error || !parsed.isPrivateKey()) {
      throw new VfleetError(
        'identity-unreadable',
        `${this.host}: identityFile ${path} is not an unencrypted private key (an encrypted key belongs in the ssh-agent)`,
      );
    }
    return { privateKey };
  }

  async #sftp(): Promise<{ conn: Connection; sftp: SFTPWrapper }> {
    const conn = await this.#connection();
    const opening: Promise<SFTPWrapper> =
      conn.sftp ??
      (async () => {
        try {
          const sftp = await new Promise<SFTPWrapper>((resolve, reject) =>
            conn.client.sftp((e, s) => (e ? reject(e) : resolve(s))),
          );
          conn.endSftp = watchSession(sftp);
          onSessionEnd(sftp, () => {
            if (conn.sftp === opening) conn.sftp = undefined;
          });
          // ssh2 can hand over a session after its connection closed (the reply was read
          // first): one that is dead from birth never reports its end.
          if (conn.dead) throw connectionLost(this.host, this.#endpoint, 'opening SFTP');
          return sftp;
        } catch (e) {
          conn.sftp = undefined;
          if (conn.dead || neverSent(e)) {
            this.#discard(conn);
            throw connectionLost(this.host, this.#endpoint, 'opening SFTP');
          }
          throw new VfleetError('sftp-failed', `${this.host}: cannot start SFTP: ${e}`, {
            cause: e,
          });
        }
      })();
    conn.sftp = opening;
    return { conn, sftp: await opening };
  }

  /** One SFTP operation; a connection found dead on the way is replaced once (all are idempotent). */
  async #withSftp<T>(
    operation: string,
    path: string,
    work: (sftp: SFTPWrapper) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const { conn, sftp } = await this.#sftp();
      try {
        return await whileSessionLives(sftp, work, () =>
          connectionLost(this.host, this.#endpoint, `${operation} ${path}`),
        );
      } catch (e) {
        if (e instanceof VfleetError && e.code === 'connection-lost' && attempt === 1) continue;
        if (conn.dead || neverSent(e)) {
          this.#discard(conn);
          if (attempt === 1) continue;
          throw connectionLost(this.host, this.#endpoint, `${operation} ${path}`);
        }
        throw fileError(this.host, operation, path, e);
      }
    }
  }

  readFile(path: string): Promise<Buffer> {
    return this.#withSftp(
      'readFile',
      path,
      (sftp) =>
        new Promise<Buffer>((resolve, reject) =>
          sftp.readFile(path, (e, data) => (e ? reject(e) : resolve(data))),
        ),
    );
  }

  writeFile(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    return this.#withSftp('writeFile', path, async (sftp) => {
      const temporary = temporaryPathFor(path);
      const call = (f: (done: (e?: Error | null) => void) => void) =>
        new Promise<void>((resolve, reject) => f((e) => (e ? reject(e) : resolve())));
      try {
        await call((done) => sftp.writeFile(temporary, bytes, { mode }, done));
        // The server's umask narrowed the mode given at open: set it exactly.
        await call((done) => sftp.chmod(temporary, mode, done));
        await rename(sftp, temporary, path);
      } catch (e) {
        await call((done) => sftp.unlink(temporary, done)).catch(() => undefined);
        throw e;
      }
    });
  }

  createReadStream(path: string): Promise<Readable> {
    return this.#withSftp('createReadStream', path, (sftp) => {
      const inner = sftp.createReadStream(path);
      const outer = new PassThrough();
      inner.pipe(outer);
      return this.#sessionStream(sftp, inner, outer, `reading ${path}`);
    });
  }

  createWriteStream(path: string, mode = 0o600): Promise<Writable> {
    return this.#withSftp('createWriteStream', path, (sftp) => {
      const inner = sftp.createWriteStream(path, { mode });
      const lost = (e: Error | null | undefined) =>
        e && neverSent(e) ? connectionLost(this.host, this.#endpoint, `writing ${path}`) : e;
      const outer = new Writable({
        write: (chunk, encoding, done) => inner.write(chunk, encoding, (e) => done(lost(e))),
        // ssh2's stream ends by closing its handle: done once it did (or failed).
        final: (done) => {
          finished(inner, (e) => done(lost(e)));
          inner.end();
        },
      });
      return this.#sessionStream(sftp, inner, outer, `writing ${path}`);
    });
  }

  /**
   * The stream a caller gets for an SFTP file stream: ours, ended with the SFTP session. ssh2
   * never answers a request made after its session ended (a dropped connection), and its stream
   * that fails then waits for its handle's close, which is such a request: an upload or a
   * download that was running when the connection dropped would never end, and the copy (an
   * image staging, a move) with it.
   */
  #sessionStream<T extends Readable | Writable>(
    sftp: SFTPWrapper,
    inner: Readable | Writable,
    outer: T,
    what: string,
  ): Promise<T> {
    const lost = () => connectionLost(this.host, this.#endpoint, what);
    const stopWaiting = onSessionEnd(sftp, () => outer.destroy(lost()));
    inner.once('error', (e) => outer.destroy(neverSent(e) ? lost() : e));
    outer.once('close', () => {
      stopWaiting();
      inner.destroy();
    });
    return new Promise<T>((resolve, reject) => {
      inner.once('open', () => resolve(outer));
      outer.once('error', reject); // kept: an error before the caller listens is no crash
    });
  }

  /**
   * A stream to a unix socket on the host through OpenSSH's streamlocal forwarding
   * (`direct-streamlocal@openssh.com`; the server's AllowStreamLocalForwarding, yes by default).
   * It holds one channel slot until it closes.
   */
  async connectUnixSocket(path: string): Promise<Duplex> {
    const release = await this.#slots.acquire();
    try {
      const conn = await this.#connection();
      const stream = await new Promise<Duplex>((resolve, reject) =>
        conn.client.openssh_forwardOutStreamLocal(path, (e, channel) =>
          e ? reject(e) : resolve(channel),
        ),
      );
      let released = false;
      const done = () => {
        if (!released) {
          released = true;
          release();
        }
      };
      stream.once('close', done);
      stream.once('error', done);
      return stream;
    } catch (e) {
      release();
      if (e instanceof VfleetError) throw e;
      const error = Object.assign(
        new Error(
          `${this.host}: cannot connect to ${path}: ${e instanceof Error ? e.message : String(e)}`,
        ),
        { code: 'ECONNREFUSED' },
      );
      throw error;
    }
  }

  async close(): Promise<void> {
    const conn = this.#live ?? (await this.#connecting?.catch(() => undefined));
    this.#live = undefined;
    if (!conn || conn.dead) return;
    await new Promise<void>((resolve) => {
      conn.client.once('close', () => resolve());
      conn.client.end();
    });
  }
}

interface ExecChannel {
  readonly stream: ClientChannel;
  /** The exit status, 128 + n for a signal; undefined until (unless) the server sends it. */
  readonly exit: { code?: number };
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
          const bySignal = signal ? 128 + (constants.signals[signal as NodeJS.Signals] ?? 0) : 0;
          exit.code = code ?? bySignal;
        });
        resolve({ stream, exit });
      });
    } catch (e) {
      reject(e); // "Not connected": thrown before anything was sent
    }
  });
}

/** Replaces `to` atomically: OpenSSH's posix-rename, else remove and rename (not atomic). */
function rename(sftp: SFTPWrapper, from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (e?: Error | null) => (e ? reject(e) : resolve());
    try {
      sftp.ext_openssh_rename(from, to, done);
    } catch {
      // The server lacks the extension (ssh2 throws synchronously).
      sftp.unlink(to, () => sftp.rename(from, to, done));
    }
  });
}
