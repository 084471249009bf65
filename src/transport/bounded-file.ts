// Reading a file of this machine that a user named (a spec, an inventory, a plan, an identity
// file, an image): only a regular file, and never more than a limit. The file is opened first
// and the *opened* descriptor is examined, so nothing can swap the path between the check and
// the read; O_NONBLOCK keeps the open of a FIFO from waiting for a writer that never comes. The
// limit is checked against the size before reading and again while reading, for a file that
// grows after the check (a log, /proc, a writer racing us).
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import type { Readable } from 'node:stream';

const MiB = 1024 * 1024;

/**
 * How much vfleet reads of each kind of file (a spec: MAX_SPEC_BYTES of spec/source-text.ts);
 * docs/spec-decisions.md says why these.
 */
export const FILE_LIMITS = {
  inventory: 16 * MiB,
  plan: 256 * MiB,
  identity: 1 * MiB,
} as const;

export type BoundedRead = { ok: true; bytes: Buffer } | { ok: false; reason: string };

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;
const CHUNK = 64 * 1024;

/** What a file that is not a regular file is, for a one-line refusal. */
function kindOf(stat: Stats): string | undefined {
  if (stat.isFile()) return undefined;
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a FIFO (named pipe)';
  if (stat.isCharacterDevice()) return 'a character device';
  if (stat.isBlockDevice()) return 'a block device';
  if (stat.isSocket()) return 'a socket';
  return 'not a regular file';
}

function notRegular(kind: string): string {
  return `is ${kind}, not a regular file`;
}

function tooLarge(size: number, maxBytes: number): string {
  return `is ${size} bytes; the limit is ${maxBytes} bytes (${maxBytes / MiB} MiB)`;
}

function grew(maxBytes: number): string {
  return `grew past ${maxBytes} bytes (${maxBytes / MiB} MiB) while it was read`;
}

/** Why an open or read failed, as a predicate ("does not exist"), without the driver's wording. */
export function ioReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  const reasons: Record<string, string> = {
    ENOENT: 'does not exist',
    EACCES: 'is not readable (permission denied)',
    EPERM: 'is not readable (permission denied)',
    EISDIR: notRegular('a directory'),
    ELOOP: 'has too many levels of symbolic links',
    ENOTDIR: 'has a part that is not a folder',
    ENAMETOOLONG: 'is too long a path',
    ENXIO: 'is a device that is not there',
  };
  return reasons[code ?? ''] ?? `cannot be read (${code ?? 'error'})`;
}

/** The whole of a regular file of at most `maxBytes`, or why not. Never throws. */
export function readBoundedFileSync(path: string, maxBytes: number): BoundedRead {
  let fd: number;
  try {
    fd = openSync(path, OPEN_FLAGS);
  } catch (e) {
    return { ok: false, reason: ioReason(e) };
  }
  try {
    const stat = fstatSync(fd);
    const kind = kindOf(stat);
    if (kind) return { ok: false, reason: notRegular(kind) };
    if (stat.size > maxBytes) return { ok: false, reason: tooLarge(stat.size, maxBytes) };
    // Read until end of file, but never more than one byte past the limit: that byte is enough
    // to know the file grew beyond it.
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(
        Math.min(Math.max(stat.size + 1, CHUNK), maxBytes + 1 - length),
      );
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      length += n;
      if (length > maxBytes) return { ok: false, reason: grew(maxBytes) };
    }
    return { ok: true, bytes: Buffer.concat(chunks, length) };
  } catch (e) {
    return { ok: false, reason: ioReason(e) };
  } finally {
    closeSync(fd);
  }
}

/** readBoundedFileSync for async callers (an identity file read at every connect). */
export async function readBoundedFile(path: string, maxBytes: number): Promise<BoundedRead> {
  let handle: FileHandle;
  try {
    handle = await open(path, OPEN_FLAGS);
  } catch (e) {
    return { ok: false, reason: ioReason(e) };
  }
  try {
    const stat = await handle.stat();
    const kind = kindOf(stat);
    if (kind) return { ok: false, reason: notRegular(kind) };
    if (stat.size > maxBytes) return { ok: false, reason: tooLarge(stat.size, maxBytes) };
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(CHUNK, maxBytes + 1 - length));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      length += bytesRead;
      if (length > maxBytes) return { ok: false, reason: grew(maxBytes) };
    }
    return { ok: true, bytes: Buffer.concat(chunks, length) };
  } catch (e) {
    return { ok: false, reason: ioReason(e) };
  } finally {
    await handle.close();
  }
}

/**
 * A stream of a regular file of any size (an image): the descriptor is checked, then streamed,
 * so a FIFO or /dev/zero named as an image is refused instead of read for ever. Throws an Error
 * whose message is the one-line reason.
 */
export async function openRegularFileStream(
  path: string,
): Promise<{ stream: Readable; size: number; mtimeMs: number }> {
  let handle: FileHandle;
  try {
    handle = await open(path, OPEN_FLAGS);
  } catch (e) {
    throw Object.assign(new Error(ioReason(e)), { code: (e as NodeJS.ErrnoException).code });
  }
  try {
    const stat = await handle.stat();
    const kind = kindOf(stat);
    if (kind) throw new Error(notRegular(kind));
    // The stream owns the handle from here and closes it when it ends or is destroyed.
    return { stream: handle.createReadStream(), size: stat.size, mtimeMs: stat.mtimeMs };
  } catch (e) {
    await handle.close();
    throw e;
  }
}
