// How vfleet reaches a real host (docs/architecture.md): run a program with an
// argument vector, move bytes to and from files. Two implementations: `local` (child processes,
// no shell anywhere) and `ssh` (ssh2, pinned host key; every argument POSIX-quoted, because an SSH
// exec request is one string that the remote login shell parses). The drivers (qemu, sandbox)
// only ever see this interface, so the same driver code runs on this machine and over SSH.
import type { Duplex, Readable, Writable } from 'node:stream';
import { VfleetError } from '../model/errors.js';

export interface ExecOptions {
  /** Bytes written to the command's stdin, which is then closed. */
  readonly stdin?: string | Buffer;
  /** Kills the command (and reports `command-timeout`) when it runs longer. */
  readonly timeoutMs?: number;
  /** Aborting kills the command: a cancelled job leaves nothing running on the host. */
  readonly signal?: AbortSignal;
}

export interface ExecResult {
  /** The exit code; a command ended by a signal reports 128 + its number. */
  readonly code: number;
  readonly stdout: Buffer;
  readonly stderr: Buffer;
}

export interface Transport {
  /** The host's name in the spec, for messages. */
  readonly host: string;
  /** Runs `argv[0]` with `argv[1..]` as its arguments, byte for byte. Never a shell of ours. */
  exec(argv: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  readFile(path: string): Promise<Buffer>;
  /** Writes the file whole (to a temporary name, then renamed), with the given mode. */
  writeFile(path: string, data: string | Buffer, mode?: number): Promise<void>;
  createReadStream(path: string): Promise<Readable>;
  createWriteStream(path: string, mode?: number): Promise<Writable>;
  /** A stream to a unix socket on the host (QEMU's QMP): local connect, or OpenSSH streamlocal. */
  connectUnixSocket(path: string): Promise<Duplex>;
  /**
   * A stream to a TCP port on the host's own 127.0.0.1 (a VM's forwarded sshd): local connect, or
   * ssh's direct-tcpip to 127.0.0.1. Never another address.
   */
  connectLoopbackPort(port: number): Promise<Duplex>;
  close(): Promise<void>;
}

/** `exec` that wants exit 0: anything else is a `command-failed` naming the host and program. */
export async function run(
  transport: Transport,
  argv: readonly string[],
  options?: ExecOptions,
): Promise<Buffer> {
  const result = await transport.exec(argv, options);
  if (result.code !== 0) {
    const stderr = result.stderr.toString('utf8').trim().split('\n').slice(-5).join('\n');
    throw new VfleetError(
      'command-failed',
      `${transport.host}: ${argv[0]} exited with ${result.code}${stderr ? `: ${stderr}` : ''}`,
    );
  }
  return result.stdout;
}

/** Copies a file from one host to another through the machine vfleet runs on (streams). */
export async function copyFile(
  from: Transport,
  fromPath: string,
  to: Transport,
  toPath: string,
  mode = 0o600,
): Promise<void> {
  const { pipeline } = await import('node:stream/promises');
  await pipeline(await from.createReadStream(fromPath), await to.createWriteStream(toPath, mode));
}
