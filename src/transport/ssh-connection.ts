// The ssh transport's connection to its host (README.md, "Connections", "Reconnect"): one ssh2
// connection, opened on first use and reused, replaced on the next use after a drop. The host key
// is pinned: a different key is refused during key exchange, before any authentication is sent.
// The identity file is read at each connect, so a rotated key is picked up. sshd does not stop a
// session's processes when its client goes, so the process groups of the commands that were
// running on a dropped connection are killed first thing on the new one, before any command may
// start on it (the kill itself is ssh-exec.ts's). The words for a drop, `lost` and `neverSent`,
// are here for the commands and SFTP alike.
import type { Duplex } from 'node:stream';
import type * as Ssh2 from 'ssh2';
import type { ConnectConfig, SFTPWrapper } from 'ssh2';
import { VfleetError } from '../model/errors.js';
import type { SshEndpoint } from '../model/fleet.js';
import { FILE_LIMITS, readBoundedFile } from './bounded-file.js';
import { type PinnedHostKey, parsePinnedHostKey, sha256Fingerprint } from './host-key.js';

/** How long a closing connection may take to say goodbye before it is torn down. */
const CLOSE_GRACE_MS = 2_000;
export type SshClient = Ssh2.Client;

/** ssh2, loaded on the first connect: a command on emulated hosts never pays for it. */
type Ssh2Module = Pick<typeof Ssh2, 'Client' | 'utils'>;
let loaded: Promise<Ssh2Module> | undefined;
const ssh2 = (): Promise<Ssh2Module> => {
  loaded ??= import('ssh2').then((m): Ssh2Module => m.default);
  return loaded;
};

export interface Connection {
  readonly client: SshClient;
  dead: boolean;
  /** Process groups of the commands running on it, to kill after a drop. */
  readonly running: Set<number>;
  sftp?: Promise<SFTPWrapper>;
  /** Ends the SFTP session for whoever waits on it: ssh2 may not say so when the drop is ours. */
  endSftp?: () => void;
}

export interface SshConnectionOptions {
  /** The TCP connect, key exchange and authentication together (ms). */
  readonly readyTimeoutMs: number;
  /** SSH keepalives: a connection whose peer misses `keepaliveCountMax` of them is dropped. */
  readonly keepaliveIntervalMs: number;
  readonly keepaliveCountMax: number;
  /**
   * Where the TCP stream comes from when it is not a connect to the endpoint's address: a VM
   * guest's sshd is reached through its host's transport (Transport.connectLoopbackPort).
   */
  readonly openSocket?: () => Promise<Duplex>;
}

/** Kills process groups on a connection (over an exec channel): how orphans are stopped. */
export type KillGroups = (conn: Connection, groups: readonly number[]) => Promise<void>;

/** ssh2's words for "the request never left or never reached the server": safe to send again. */
export const neverSent = (e: unknown) =>
  e instanceof Error && /^(Not connected|No response from server)$/.test(e.message);

export class SshConnection {
  readonly host: string;
  /** `address:port`, for messages. */
  readonly endpoint: string;
  readonly #ssh: SshEndpoint;
  readonly #pinned: PinnedHostKey;
  readonly #options: SshConnectionOptions;
  readonly #killOrphans: KillGroups;
  #live: Connection | undefined;
  #connecting: Promise<Connection> | undefined;
  /** The client of the connection being opened: close() ends it at once, handshake or not. */
  #opening: { destroy(): void } | undefined;
  /** Process groups left running by a dropped connection, killed first on the next one. */
  #orphans = new Set<number>();

  constructor(
    host: string,
    ssh: SshEndpoint,
    options: SshConnectionOptions,
    killOrphans: KillGroups,
  ) {
    this.host = host;
    this.#ssh = ssh;
    this.endpoint = `${ssh.address}:${ssh.port}`;
    try {
      this.#pinned = parsePinnedHostKey(ssh.hostKey);
    } catch (e) {
      throw new VfleetError('invalid-host', `${host}: ${(e as Error).message}`);
    }
    this.#options = options;
    this.#killOrphans = killOrphans;
  }

  /** `connection-lost` (retryable): the connection dropped while `what`. */
  lost(what: string): VfleetError {
    return new VfleetError(
      'connection-lost',
      `${this.host} (${this.endpoint}): the connection dropped while ${what}`,
      { retryable: true },
    );
  }

  /** The live connection, or a new one when there is none or it dropped. */
  get(): Promise<Connection> {
    if (this.#live && !this.#live.dead) return Promise.resolve(this.#live);
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(): Promise<Connection> {
    const credentials = await this.#credentials();
    const sock = await this.#socket();
    const { Client } = await ssh2();
    const client = new Client();
    this.#opening = client;
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
              `${this.host} (${this.endpoint}): the host key presented, ${presented}, is not the pinned ${this.#pinned.fingerprint}; refusing to connect`,
            ),
          );
        }
        if (e.level === 'handshake' && /host key format/.test(e.message)) {
          return fail(
            new VfleetError(
              'host-key-mismatch',
              `${this.host} (${this.endpoint}): the host offers no key of the pinned kind (${this.#pinned.algorithms?.join(', ')}), so not the pinned ${this.#pinned.fingerprint}; refusing to connect`,
            ),
          );
        }
        if (e.level === 'client-authentication') {
          return fail(
            new VfleetError(
              'ssh-auth-failed',
              `${this.host}: authentication as ${this.#ssh.user}@${this.endpoint} failed (${credentials.agent ? 'ssh-agent keys' : this.#ssh.identityFile})`,
            ),
          );
        }
        const why = e.level === 'client-timeout' ? e.message : (e.code ?? e.message);
        fail(
          new VfleetError('host-unreachable', `${this.host} (${this.endpoint}): ${why}`, {
            retryable: true,
          }),
        );
      });
      client.on('close', () => {
        this.discard(conn);
        fail(
          new VfleetError(
            'host-unreachable',
            `${this.host} (${this.endpoint}): the connection closed during the handshake`,
            { retryable: true },
          ),
        );
      });
      const config: ConnectConfig = {
        ...(sock ? { sock } : { host: this.#ssh.address, port: this.#ssh.port }),
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
        await this.#killOrphans(conn, groups);
        for (const group of groups) this.#orphans.delete(group);
      } catch {
        // Dropped again: they stay orphans for the next connection.
      }
    }
    this.#live = conn; // only now: no command may start before the orphans are gone
    return conn;
  }

  /** A connection that dropped (or is found dead): its running commands become orphans. */
  discard(conn: Connection): void {
    conn.dead = true;
    conn.endSftp?.();
    for (const group of conn.running) this.#orphans.add(group);
    conn.running.clear();
    conn.client.destroy();
  }

  /** The stream `openSocket` gives, or undefined (ssh2 connects); a refusal is retryable. */
  async #socket(): Promise<Duplex | undefined> {
    if (!this.#options.openSocket) return undefined;
    try {
      return await this.#options.openSocket();
    } catch (e) {
      throw new VfleetError(
        'host-unreachable',
        `${this.host} (${this.endpoint}): ${e instanceof Error ? e.message : String(e)}`,
        { retryable: true },
      );
    }
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
    const parsed = (await ssh2()).utils.parseKey(privateKey);
    if (parsed instanceof Error || !parsed.isPrivateKey()) {
      throw new VfleetError(
        'identity-unreadable',
        `${this.host}: identityFile ${path} is not an unencrypted private key (an encrypted key belongs in the ssh-agent)`,
      );
    }
    return { privateKey };
  }

  /** Ends the live connection (or the one being opened); the next use opens a new one. */
  async close(): Promise<void> {
    // A connection still being opened is not waited for (a host that accepts TCP and never
    // answers would hold the close for the whole readyTimeout): it is torn down.
    if (!this.#live && this.#connecting) this.#opening?.destroy();
    const conn = this.#live ?? (await this.#connecting?.catch(() => undefined));
    this.#live = undefined;
    if (!conn || conn.dead) return;
    await new Promise<void>((resolve) => {
      // A polite end, bounded: a hung peer never answers the disconnect.
      const timer = setTimeout(() => conn.client.destroy(), CLOSE_GRACE_MS);
      conn.client.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      conn.client.end();
    });
  }
}
