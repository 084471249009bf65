// The raw Redis client: one inline command on a unix socket, and the first line of its reply. It
// asks the private server whether it answers and whether it is still reading its AOF back, and
// sends it SHUTDOWN, without a client of ioredis's, which would bring reconnection and an offline
// queue of its own. It sends no password: the private server has none.
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';

/** How long a probe waits for a reply. */
export const PROBE_TIMEOUT_MS = 1_000;

/**
 * Sends one inline command on a raw socket and returns the first line of the reply, or null
 * when nothing answers (no socket, refused, closed, timed out). Raw, so that probing a
 * socket needs no client with reconnection and offline queues of its own.
 */
export function inlineCommand(
  socket: string,
  command: string,
  timeoutMs: number,
): Promise<string | null> {
  return new Promise((resolve) => {
    let settled = false;
    let buffered = '';
    const conn = createConnection(socket);
    const finish = (line: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.destroy();
      resolve(line);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${command}\r\n`));
    conn.on('data', (chunk: string) => {
      buffered += chunk;
      const end = buffered.indexOf('\r\n');
      if (end >= 0) finish(buffered.slice(0, end));
    });
    conn.on('error', () => finish(null));
    conn.on('close', () => finish(null));
  });
}

/** The first line of the reply to PING, or null when nothing answers within PROBE_TIMEOUT_MS. */
export function ping(socket: string): Promise<string | null> {
  return inlineCommand(socket, 'PING', PROBE_TIMEOUT_MS);
}

/** A server answers when PING gets any reply: `-LOADING` means it is alive and reading its AOF. */
export async function answers(socket: string): Promise<boolean> {
  if (!existsSync(socket)) return false;
  const reply = await ping(socket);
  return reply !== null && (reply.startsWith('+') || reply.startsWith('-'));
}
