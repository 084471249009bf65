// Socket forwarding over ssh: a stream to a unix socket on the host (QEMU's QMP) through
// OpenSSH's streamlocal forwarding (`direct-streamlocal@openssh.com`; the server's
// AllowStreamLocalForwarding, yes by default). The forwarded channel counts as one of the
// commands' channels (channel-slots.ts), held until the stream closes.
import type { Duplex } from 'node:stream';
import { VfleetError } from '../model/errors.js';
import type { ChannelSlots } from './channel-slots.js';
import type { SshClient, SshConnection } from './ssh-connection.js';

/** A stream to the unix socket `path` on the host; a refused one is an `ECONNREFUSED` error. */
export function forwardUnixSocket(
  connection: SshConnection,
  slots: ChannelSlots,
  path: string,
): Promise<Duplex> {
  return forward(connection, slots, path, (client, done) =>
    client.openssh_forwardOutStreamLocal(path, done),
  );
}

/**
 * A stream to TCP `port` on the host's 127.0.0.1 (ssh's direct-tcpip, which sshd's
 * AllowTcpForwarding allows by default); a refused one is an `ECONNREFUSED` error.
 */
export function forwardLoopbackPort(
  connection: SshConnection,
  slots: ChannelSlots,
  port: number,
): Promise<Duplex> {
  return forward(connection, slots, `127.0.0.1:${port}`, (client, done) =>
    client.forwardOut('127.0.0.1', 0, '127.0.0.1', port, done),
  );
}

type Opened = (e: Error | undefined, channel: Duplex) => void;

async function forward(
  connection: SshConnection,
  slots: ChannelSlots,
  what: string,
  open: (client: SshClient, done: Opened) => void,
): Promise<Duplex> {
  const release = await slots.acquire();
  try {
    const conn = await connection.get();
    const stream = await new Promise<Duplex>((resolve, reject) =>
      open(conn.client, (e, channel) => (e ? reject(e) : resolve(channel))),
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
        `${connection.host}: cannot connect to ${what}: ${e instanceof Error ? e.message : String(e)}`,
      ),
      { code: 'ECONNREFUSED' },
    );
    throw error;
  }
}
