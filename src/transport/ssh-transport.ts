// The ssh transport (README.md): the `Transport` of a host reached over SSH, composed of one
// concern per file: the connection, its pinned host key and its reconnects (ssh-connection.ts),
// commands and how they are killed (ssh-exec.ts), files over SFTP (ssh-sftp.ts) and socket
// forwarding (ssh-forwarding.ts). Here: the options, and the channels they share: at most
// `maxSessions` channels on the connection at once (sshd's MaxSessions), the rest wait in order.
import type { Duplex, Readable, Writable } from 'node:stream';
import { VfleetError } from '../model/errors.js';
import type { Host } from '../model/fleet.js';
import { ChannelSlots } from './channel-slots.js';
import { SshConnection } from './ssh-connection.js';
import { SshExec } from './ssh-exec.js';
import { forwardLoopbackPort, forwardUnixSocket } from './ssh-forwarding.js';
import { SshSftp } from './ssh-sftp.js';
import type { ExecOptions, ExecResult, Transport } from './transport.js';

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
  /** Where the TCP stream comes from instead of a connect (a VM guest's, through its host). */
  readonly openSocket?: () => Promise<Duplex>;
}

export class SshTransport implements Transport {
  readonly host: string;
  readonly #connection: SshConnection;
  /** Commands and forwarded sockets; the SFTP session and kills have a channel each besides. */
  readonly #slots: ChannelSlots;
  readonly #exec: SshExec;
  readonly #sftp: SshSftp;

  constructor(host: Pick<Host, 'name' | 'ssh'>, options: SshTransportOptions = {}) {
    // The endpoint is what makes a host reachable over ssh (normalize gives one to the hosts
    // whose engine reads it); which engine that is, is engines/' business.
    if (host.ssh === undefined) {
      throw new VfleetError('invalid-host', `${host.name}: not an ssh host (no ssh endpoint)`);
    }
    this.host = host.name;
    // Orphans of a dropped connection are killed the way a timed-out command is.
    this.#connection = new SshConnection(
      host.name,
      host.ssh,
      {
        readyTimeoutMs: options.readyTimeoutMs ?? 20_000,
        keepaliveIntervalMs: options.keepaliveIntervalMs ?? 10_000,
        keepaliveCountMax: options.keepaliveCountMax ?? 3,
        ...(options.openSocket ? { openSocket: options.openSocket } : {}),
      },
      (conn, groups) => this.#exec.kill(conn, groups),
    );
    const maxSessions = options.maxSessions ?? 10;
    if (maxSessions < 3) {
      throw new Error('SshTransport: maxSessions must be at least 3 (SFTP, kills, commands)');
    }
    this.#slots = new ChannelSlots(maxSessions - 2);
    this.#exec = new SshExec(this.#connection, this.#slots, options.killGraceMs ?? 5_000);
    this.#sftp = new SshSftp(this.#connection);
  }

  exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return this.#exec.exec(argv, options);
  }

  readFile(path: string): Promise<Buffer> {
    return this.#sftp.readFile(path);
  }

  writeFile(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
    return this.#sftp.writeFile(path, data, mode);
  }

  createReadStream(path: string): Promise<Readable> {
    return this.#sftp.createReadStream(path);
  }

  createWriteStream(path: string, mode = 0o600): Promise<Writable> {
    return this.#sftp.createWriteStream(path, mode);
  }

  /** It holds one of the commands' channels until it closes. */
  connectUnixSocket(path: string): Promise<Duplex> {
    return forwardUnixSocket(this.#connection, this.#slots, path);
  }

  /** It holds one of the commands' channels until it closes. */
  connectLoopbackPort(port: number): Promise<Duplex> {
    return forwardLoopbackPort(this.#connection, this.#slots, port);
  }

  close(): Promise<void> {
    return this.#connection.close();
  }
}
