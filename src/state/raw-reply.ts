// One MULTI over a raw connection, its reply parsed here rather than by ioredis: the state read
// `vfleet plan` sends before it parses its spec (raw-state-read.ts's fetchStateRaw, started by
// app/state-read-start.ts). On 100,000 instances ioredis made a Buffer of each record and
// decoded each through its generic machinery (~150 ms of a plan); here the records stay where
// they arrived, in one buffer, and an array of bulk strings is their offsets, which the radix
// sort and the parse read directly (instance-records.ts). No ioredis has to be loaded to send
// the read, either: it is sent before the plan command loads it.
//
// RESP2 only, as a server speaks it to a client that has not said HELLO. Anything unexpected —
// an error reply (AUTH refused, a command not allowed), an aborted transaction, a closed socket,
// a connection not made in time — rejects, and the caller reads through ioredis as every other
// command does, which reports what is wrong. No error here quotes a password.
import { isIP, connect as netConnect, type Socket } from 'node:net';

/** Where the server is: a unix socket, or host and port (with TLS for rediss://). */
export interface RawEndpoint {
  readonly path?: string;
  readonly host?: string;
  readonly port?: number;
  readonly tls?: boolean;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly db?: number;
}

/** The bulk strings of an array, where they lie in `data` (an end of -1: a nil). */
export interface BulkStrings {
  readonly data: Buffer;
  readonly starts: Int32Array;
  readonly ends: Int32Array;
}

export type RespValue = string | number | null | BulkStrings | RespValue[];

/** An array reply's elements as JavaScript strings (nil as null). */
export function bulkTexts(value: RespValue): Array<string | null> {
  if (Array.isArray(value)) return value.map((v) => (typeof v === 'string' ? v : null));
  if (value === null || typeof value !== 'object') throw new Error('not an array reply');
  const texts: Array<string | null> = [];
  for (let i = 0; i < value.starts.length; i++) {
    const end = value.ends[i] as number;
    texts.push(end < 0 ? null : value.data.toString('utf8', value.starts[i], end));
  }
  return texts;
}

function command(args: readonly string[]): string {
  let text = `*${args.length}\r\n`;
  for (const a of args) text += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return text;
}

/** A Cluster node answered MOVED: the slot is another node's (its address, not a secret). */
export class MovedError extends Error {
  constructor(
    readonly host: string,
    readonly port: number,
  ) {
    super('MOVED');
  }
}

/**
 * Sends `commands` in one MULTI (after AUTH and SELECT where the endpoint has them) and resolves
 * with EXEC's replies. `connectMs` bounds the connection, not the reply: a large one takes what
 * it takes, as it would through ioredis. `signal` abandons it (the socket is closed). A Cluster
 * node that does not hold the keys' slot rejects with MovedError, naming the node that does.
 */
export async function rawTransaction(
  endpoint: RawEndpoint,
  commands: ReadonlyArray<readonly string[]>,
  connectMs: number,
  signal?: AbortSignal,
): Promise<RespValue[]> {
  const handshake: string[][] = [];
  if (endpoint.password !== undefined) {
    handshake.push(
      endpoint.username === undefined
        ? ['AUTH', endpoint.password]
        : ['AUTH', endpoint.username, endpoint.password],
    );
  }
  if (endpoint.db !== undefined && endpoint.db !== 0)
    handshake.push(['SELECT', String(endpoint.db)]);
  const all = [...handshake, ['MULTI'], ...commands, ['EXEC']];
  const replies = await exchange(endpoint, all, connectMs, signal);
  const failed = replies.findIndex((r) => r instanceof RespError);
  if (failed >= 0) {
    const moved = /^MOVED \d+ (.+):(\d+)$/.exec((replies[failed] as RespError).message);
    if (moved)
      throw new MovedError((moved[1] as string).replace(/^\[(.*)\]$/, '$1'), Number(moved[2]));
    // Which command, never its arguments (AUTH's are the password).
    throw new Error(`${all[failed]?.[0] ?? '?'} was refused`);
  }
  const exec = replies[replies.length - 1];
  if (!Array.isArray(exec)) throw new Error('the transaction was aborted');
  return exec as RespValue[];
}

/** One command (no AUTH, no MULTI: a Sentinel's question) and its reply. */
export async function rawCommand(
  endpoint: RawEndpoint,
  args: readonly string[],
  connectMs: number,
  signal?: AbortSignal,
): Promise<RespValue> {
  const [reply] = await exchange(endpoint, [args], connectMs, signal);
  if (reply === undefined || reply instanceof RespError) {
    throw new Error(`${args[0] ?? '?'} was refused`);
  }
  return reply;
}

/** Sends every command at once and resolves with their replies, errors as RespError. */
async function exchange(
  endpoint: RawEndpoint,
  all: ReadonlyArray<readonly string[]>,
  connectMs: number,
  signal?: AbortSignal,
): Promise<Array<RespValue | RespError>> {
  // TLS only for rediss://: the read is sent before most of the command is loaded.
  const tls = endpoint.tls ? await import('node:tls') : undefined;
  return new Promise((resolve, reject) => {
    let socket: Socket;
    if (endpoint.path !== undefined) socket = netConnect(endpoint.path);
    else if (tls) {
      const host = endpoint.host ?? 'localhost';
      socket = tls.connect({
        host,
        port: endpoint.port ?? 6379,
        ...(isIP(host) ? {} : { servername: host }),
      });
    } else socket = netConnect(endpoint.port ?? 6379, endpoint.host ?? 'localhost');
    const framer = new ReplyFramer(all.length);
    let settled = false;
    const finish = (error: Error | undefined, value?: Array<RespValue | RespError>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', abandon);
      socket.destroy();
      if (error) reject(error);
      else resolve(value as Array<RespValue | RespError>);
    };
    const timer = setTimeout(() => finish(new Error('no connection in time')), connectMs);
    const abandon = () => finish(new Error('abandoned'));
    if (signal?.aborted) abandon();
    signal?.addEventListener('abort', abandon, { once: true });
    socket.once(endpoint.tls ? 'secureConnect' : 'connect', () => clearTimeout(timer));
    socket.on('error', () => finish(new Error('the connection failed')));
    socket.on('close', () => finish(new Error('the connection closed')));
    socket.on('data', (chunk: Buffer) => {
      try {
        if (framer.push(chunk)) finish(undefined, framer.parse());
      } catch (e) {
        finish(e instanceof Error ? e : new Error(String(e)));
      }
    });
    socket.write(all.map(command).join(''));
  });
}

class RespError {
  constructor(readonly message: string) {}
}

/**
 * Collects a stream of replies into one buffer and says when `expected` of them are complete,
 * by their framing alone (what each element's type and length say), then parses them.
 */
class ReplyFramer {
  private data = Buffer.allocUnsafe(1 << 20);
  private length = 0;
  /** The first byte not yet framed. */
  private pos = 0;
  /** Elements still to come: the top-level replies, then those of each array being read. */
  private readonly pending: number[];
  private done = false;

  constructor(expected: number) {
    this.pending = [expected];
  }

  /** Adds bytes; true once every expected reply is complete. */
  push(chunk: Buffer): boolean {
    if (this.done) throw new Error('more than the replies asked for');
    if (this.length + chunk.length > this.data.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.data.length * 4, this.length + chunk.length));
      this.data.copy(grown, 0, 0, this.length);
      this.data = grown;
    }
    chunk.copy(this.data, this.length);
    this.length += chunk.length;
    this.frame();
    return this.done;
  }

  private frame(): void {
    const data = this.data;
    while (!this.done) {
      // A line: the type, then up to CR LF.
      const type = data[this.pos] as number;
      let eol = this.pos + 1;
      while (eol < this.length && data[eol] !== 13) eol++;
      if (eol + 1 >= this.length) return;
      let next = eol + 2;
      if (type === 36 /* $ */ || type === 42 /* * */) {
        const n = lineNumber(data, this.pos + 1, eol);
        if (type === 36 && n >= 0) {
          next += n + 2;
          if (next > this.length) return;
        }
        if (type === 42 && n > 0) {
          this.pos = next;
          this.pending.push(n);
          continue;
        }
      } else if (type !== 43 /* + */ && type !== 45 /* - */ && type !== 58 /* : */) {
        throw new Error('not a RESP2 reply');
      }
      this.pos = next;
      this.complete();
    }
  }

  /** One element is complete: so may be the arrays it ends, and the replies. */
  private complete(): void {
    for (;;) {
      const top = this.pending.length - 1;
      const left = (this.pending[top] as number) - 1;
      this.pending[top] = left;
      if (left > 0) return;
      if (top === 0) {
        this.done = true;
        return;
      }
      this.pending.pop();
    }
  }

  /** The complete replies (framed, so every length holds). */
  parse(): Array<RespValue | RespError> {
    const at = { pos: 0 };
    const replies: Array<RespValue | RespError> = [];
    while (at.pos < this.length) replies.push(parseValue(this.data, at));
    return replies;
  }
}

function lineNumber(data: Buffer, from: number, to: number): number {
  let n = 0;
  let sign = 1;
  for (let i = from; i < to; i++) {
    const c = data[i] as number;
    if (c === 45 /* - */ && i === from) sign = -1;
    else if (c >= 48 && c <= 57) n = n * 10 + (c - 48);
    else throw new Error('not a RESP2 length');
  }
  return sign * n;
}

function lineEnd(data: Buffer, from: number): number {
  let eol = from;
  while (data[eol] !== 13) eol++;
  return eol;
}

function parseValue(data: Buffer, at: { pos: number }): RespValue | RespError {
  const type = data[at.pos] as number;
  const eol = lineEnd(data, at.pos + 1);
  const line = at.pos + 1;
  at.pos = eol + 2;
  switch (type) {
    case 43 /* + */:
      return data.toString('utf8', line, eol);
    case 45 /* - */:
      return new RespError(data.toString('utf8', line, eol));
    case 58 /* : */:
      return lineNumber(data, line, eol);
    case 36 /* $ */:
      {
        const n = lineNumber(data, line, eol);
        if (n < 0) return null;
        const text = data.toString('utf8', at.pos, at.pos + n);
        at.pos += n + 2;
        return text;
      }
    default:
      return parseArray(data, at, lineNumber(data, line, eol));
  }
}

/** An array: its bulk strings as offsets while they all are, else each element parsed. */
function parseArray(data: Buffer, at: { pos: number }, n: number): RespValue | RespError {
  if (n < 0) return null;
  const starts = new Int32Array(n);
  const ends = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    if (data[at.pos] !== 36 /* $ */) {
      const values: Array<RespValue | RespError> = bulkTexts({ data, starts, ends }).slice(0, i);
      for (let j = i; j < n; j++) values.push(parseValue(data, at));
      const error = values.find((v) => v instanceof RespError);
      return error ?? (values as RespValue[]);
    }
    const eol = lineEnd(data, at.pos + 1);
    const length = lineNumber(data, at.pos + 1, eol);
    at.pos = eol + 2;
    starts[i] = at.pos;
    ends[i] = length < 0 ? -1 : at.pos + length;
    if (length >= 0) at.pos += length + 2;
  }
  return { data, starts, ends };
}
