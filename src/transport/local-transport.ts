// The local transport: child processes started with an argument vector (spawn without a shell),
// so no value from a spec is ever parsed by a shell. Each command gets its own process group so
// a timeout or an abort kills everything it started.
import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { chmod, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { constants } from 'node:os';
import type { Duplex, Readable, Writable } from 'node:stream';
import { VfleetError } from '../model/errors.js';
import { openRegularFileStream } from './bounded-file.js';
import { temporaryPathFor } from './temporary-name.js';
import type { ExecOptions, ExecResult, Transport } from './transport.js';

export class LocalTransport implements Transport {
  constructor(readonly host: string) {}

  exec(argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    const [program, ...args] = argv;
    if (program === undefined) throw new Error('exec: empty argv');
    if (options.signal?.aborted) {
      return Promise.reject(new VfleetError('command-aborted', `${this.host}: ${program} aborted`));
    }
    return new Promise((resolve, reject) => {
      const child = spawn(program, args, { stdio: 'pipe', detached: true });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      let ended: VfleetError | undefined;
      const killGroup = () => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      };
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              ended = new VfleetError(
                'command-timeout',
                `${this.host}: ${program} ran longer than ${options.timeoutMs} ms and was killed`,
                { retryable: true },
              );
              killGroup();
            }, options.timeoutMs);
      const onAbort = () => {
        ended = new VfleetError('command-aborted', `${this.host}: ${program} aborted`);
        killGroup();
      };
      options.signal?.addEventListener('abort', onAbort, { once: true });
      child.stdout.on('data', (b: Buffer) => stdout.push(b));
      child.stderr.on('data', (b: Buffer) => stderr.push(b));
      child.stdin.on('error', () => {}); // a command that does not read its stdin
      child.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        reject(
          new VfleetError(
            'command-failed',
            `${this.host}: cannot run ${program}: ${e.code ?? e.message}`,
          ),
        );
      });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        if (ended) return reject(ended);
        const bySignal = signal ? 128 + (constants.signals[signal] ?? 0) : 0;
        resolve({
          code: code ?? bySignal,
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
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(socket);
      });
      socket.once('error', reject);
    });
  }

  async close(): Promise<void> {}
}
