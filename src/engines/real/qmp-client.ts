// A small QMP client (QEMU Machine Protocol: JSON lines over the VM's unix socket), reached
// through `Transport.connectUnixSocket` so it works on this machine and over ssh alike. The
// session is: read the greeting, `qmp_capabilities`, then commands, each answered by a
// `return` or an `error` carrying the command's id; asynchronous `event`s go to whoever listens
// (`onEvent`, a live migration's waits), else nowhere.
import type { Duplex } from 'node:stream';
import { VfleetError } from '../../model/errors.js';
import type { Transport } from '../../transport/transport.js';

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class QmpClient {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private greeting: Pending | undefined;
  private closed: Error | undefined;
  private readonly listeners = new Set<(event: string, data: unknown) => void>();

  private constructor(
    private readonly socket: Duplex,
    private readonly where: string,
    private readonly timeoutMs: number,
  ) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    const end = (e?: Error) => this.fail(e ?? new Error('connection closed'));
    socket.on('error', end);
    socket.on('close', () => end());
  }

  /** Connects and negotiates; the caller closes. */
  static async connect(t: Transport, socketPath: string, timeoutMs = 5_000): Promise<QmpClient> {
    const where = `${t.host}: QMP ${socketPath}`;
    let socket: Duplex;
    const connecting = t.connectUnixSocket(socketPath);
    try {
      socket = await withTimeout(connecting, timeoutMs, where);
    } catch (e) {
      // QEMU serves one QMP client at a time: a connection that arrives late must not keep
      // the slot from everyone after us.
      connecting.then(
        (late) => late.destroy(),
        () => undefined,
      );
      throw new VfleetError('qmp-unavailable', `${where}: ${(e as Error).message}`, {
        retryable: true,
        cause: e,
      });
    }
    const client = new QmpClient(socket, where, timeoutMs);
    try {
      await withTimeout(
        new Promise((resolve, reject) => {
          client.greeting = { resolve, reject };
        }),
        timeoutMs,
        `${where}: greeting`,
      );
      await client.execute('qmp_capabilities');
    } catch (e) {
      client.close();
      throw e instanceof VfleetError
        ? e
        : new VfleetError('qmp-unavailable', `${where}: ${(e as Error).message}`, {
            retryable: true,
          });
    }
    return client;
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closed) {
      return Promise.reject(
        new VfleetError('qmp-unavailable', `${this.where}: ${this.closed.message}`, {
          retryable: true,
        }),
      );
    }
    const id = `vfleet-${this.nextId++}`;
    const answer = new Promise<unknown>((resolve, reject) =>
      this.pending.set(id, { resolve, reject }),
    );
    this.socket.write(`${JSON.stringify({ execute: command, arguments: args, id })}\n`);
    return withTimeout(answer, this.timeoutMs, `${this.where}: ${command}`).finally(() =>
      this.pending.delete(id),
    );
  }

  /** Calls `listener` with every event QEMU sends on this connection, until the returned stop. */
  onEvent(listener: (event: string, data: unknown) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.socket.destroy();
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    for (;;) {
      const newline = this.buffer.indexOf('\n');
      if (newline === -1) return;
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line === '') continue;
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(line) as Record<string, unknown>;
      } catch {
        continue; // not a QMP message; nothing waits for it
      }
      if ('QMP' in message) {
        this.greeting?.resolve(message);
        this.greeting = undefined;
        continue;
      }
      if (typeof message.event === 'string') {
        for (const listener of this.listeners) listener(message.event, message.data);
        continue;
      }
      const waiting = typeof message.id === 'string' ? this.pending.get(message.id) : undefined;
      if (!waiting) continue; // an answer nobody waits for any more
      if ('error' in message) {
        const error = message.error as { class?: string; desc?: string };
        waiting.reject(
          new VfleetError('qmp-error', `${this.where}: ${error.class}: ${error.desc}`),
        );
      } else {
        waiting.resolve(message.return);
      }
    }
  }

  private fail(error: Error): void {
    if (this.closed) return;
    this.closed = error;
    this.greeting?.reject(error);
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new VfleetError('qmp-timeout', `${what}: no answer in ${ms} ms`, { retryable: true }),
        ),
      ms,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A few commands on one fresh connection, closed after them: QEMU serves one QMP client at a
 * time, so nobody holds the socket for longer than the commands take.
 */
export async function withQmp<T>(
  t: Transport,
  socketPath: string,
  use: (client: QmpClient) => Promise<T>,
  timeoutMs?: number,
): Promise<T> {
  const client = await QmpClient.connect(t, socketPath, timeoutMs);
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

/** One command on a fresh connection. */
export function qmp(
  t: Transport,
  socketPath: string,
  command: string,
  args?: Record<string, unknown>,
  timeoutMs?: number,
): Promise<unknown> {
  return withQmp(t, socketPath, (client) => client.execute(command, args), timeoutMs);
}
