// The local transport: child processes started with an argument vector (spawn without a shell),
// so no value from a spec is ever parsed by a shell. Each command gets its own process group so
// a timeout or an abort (command-limits.ts) kills everything it started.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import type { Duplex, Readable, Writable } from 'node:stream';
import type { VfleetError } from '../model/errors.js';
import { openRegularFileStream } from './bounded-file.js';
import { cannotRun, exitStatus, limitCommand } from './command-limits.js';
import { temporaryPathFor } from './temporary-name.js';
import type { ExecOptions, ExecResult, Transport } from './transport.js';

export class LocalTransport implements Transport {
  constructor(readonly host: string) {}

  exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const [program, ...args] = argv;
    if (program === undefined) throw new Error('exec: empty argv');
    return new Promise((resolve, reject) => {
      // Throws (so rejects, before anything starts) when the signal has fired already.
      const limit = limitCommand(this.host, program, options);
      let child: ChildProcessWithoutNullStreams;
      try {
        child = spawn(program, args, { stdio: 'pipe', detached: true });
      } catch (e) {
        limit.dispose(); // an argument spawn refuses (a NUL byte): nothing started
        throw e;
      }
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let ended: VfleetError | undefined;
      limit.stopped.catch((reason: VfleetError) => {
        ended = reason;
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      });
      child.stdout.on('data', (b: Buffer) => stdout.push(b));
      child.stderr.on('data', (b: Buffer) => stderr.push(b));
      child.stdin.on('error', () => {}); // a command that does not read its stdin
      child.once('error', (e: NodeJS.ErrnoException) => {
        limit.dispose();
        reject(cannotRun(this.host, program, e.code ?? e.message));
      });
      child.once('close', (code, signal) => {
        limit.dispose();
        if (ended) return reject(ended);
        resolve({
          code: exitStatus(code, signal),
          stdout: Buffer.concat(stdout),
          stderr: Buffer.concat(stderr),
        });
      });
      child.stdin.end(options.stdin ?? '');
    });
  }

  readFile(path: string): Promise<Buffer> {
    return readFile(path);
  }

  async writeFile(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
    // A name of its own per call: concurrent writes of one path each rename a whole file, and
    // the last rename wins (never a mix of two payloads, never a rename of a file already gone).
    const temporary = temporaryPathFor(path);
    try {
      await writeFile(temporary, data, { mode });
      await chmod(temporary, mode);
      await rename(temporary, path);
    } catch (e) {
      await rm(temporary, { force: true }).catch(() => undefined);
      throw e;
    }
  }

  /** A regular file only: an image named as /dev/zero or a FIFO is refused, not read for ever. */
  async createReadStream(path: string): Promise<Readable> {
    return (await openRegularFileStream(path)).stream;
  }

  async createWriteStream(path: string, mode = 0o600): Promise<Writable> {
    return createWriteStream(path, { mode });
  }

  connectUnixSocket(path: string): Promise<Duplex> {
    return connected(connect(path));
  }

  connectLoopbackPort(port: number): Promise<Duplex> {
    return connected(connect({ host: '127.0.0.1', port }));
  }

  async close(): Promise<void> {}
}

function connected(socket: Socket): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
