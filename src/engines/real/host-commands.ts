// Small reads and writes on a host, all through `Transport.exec` with argument vectors, so they
// work the same over the local and the ssh transport (the ssh transport quotes every argument).
// Files under /proc and /sys are read with `cat`: their size is 0 to stat, which SFTP-style
// readers trust.
import { VfleetError } from '../../model/errors.js';
import { copyFile, run, type Transport } from '../../transport/transport.js';

/** The file's text, or undefined when it cannot be read (absent, gone, not permitted). */
export async function readText(t: Transport, path: string): Promise<string | undefined> {
  const result = await t.exec(['cat', '--', path]);
  return result.code === 0 ? result.stdout.toString('utf8') : undefined;
}

export async function exists(t: Transport, path: string): Promise<boolean> {
  return (await t.exec(['test', '-e', path])).code === 0;
}

/**
 * Writes in place (cgroup and proc files cannot be renamed over): `tee` copies its stdin to the
 * file, no shell involved.
 */
export async function writeInPlace(t: Transport, path: string, value: string): Promise<void> {
  await run(t, ['tee', '--', path], { stdin: value });
}

export async function mkdirs(t: Transport, ...paths: string[]): Promise<void> {
  await run(t, ['mkdir', '-p', '--', ...paths]);
}

/** Removes a folder tree; never follows into another filesystem (a mount left inside a rootfs). */
export async function removeTree(t: Transport, path: string): Promise<void> {
  await run(t, ['rm', '-rf', '--one-file-system', '--', path]);
}

export async function sha256Of(
  t: Transport,
  path: string,
  timeoutMs?: number,
): Promise<string | undefined> {
  const result = await t.exec(['sha256sum', '--', path], timeoutMs ? { timeoutMs } : undefined);
  if (result.code !== 0) return undefined;
  return result.stdout.toString('utf8').split(/\s/)[0];
}

export interface CopyCheck {
  /** The sha256 the copy must have; without it, the source's own, read while the copy is checked. */
  readonly expected?: string;
  /** The error's code when the copy differs (it is retryable: the next copy may be whole). */
  readonly code: string;
  /** What is copied, for the message: "the disk of vm-0". */
  readonly what: string;
  readonly mode?: number;
  /** For each sha256sum. */
  readonly timeoutMs?: number;
}

/**
 * Streams a file from one host to another (through the machine vfleet runs on) and checks the
 * sha256 of what landed; a copy that differs, or fails, is removed. The caller renames it into
 * place: `toPath` is a temporary name of its own.
 */
export async function copyChecked(
  from: Transport,
  fromPath: string,
  to: Transport,
  toPath: string,
  check: CopyCheck,
): Promise<void> {
  try {
    await copyFile(from, fromPath, to, toPath, check.mode ?? 0o600);
    const [sent, got] = await Promise.all([
      check.expected ?? sha256Of(from, fromPath, check.timeoutMs),
      sha256Of(to, toPath, check.timeoutMs),
    ]);
    if (sent === undefined || sent !== got) {
      throw new VfleetError(
        check.code,
        `${check.what} copied from ${from.host} to ${to.host} arrived with sha256 ${got ?? 'unreadable'}, expected ${sent ?? 'unreadable'}`,
        { retryable: true },
      );
    }
  } catch (e) {
    await to.exec(['rm', '-f', '--', toPath]);
    throw e;
  }
}

/** The pid in a pidfile, or undefined. */
export async function readPid(t: Transport, pidfile: string): Promise<number | undefined> {
  const text = await readText(t, pidfile);
  const pid = Number(text?.trim());
  return Number.isInteger(pid) && pid > 1 ? pid : undefined;
}

/**
 * Whether `pid` is alive and is the process we started: its command line must contain `marker`
 * (a path unique to the instance), so a pid reused by another program is not taken for ours.
 * A zombie has an empty command line and counts as gone.
 */
export async function processAlive(t: Transport, pid: number, marker: string): Promise<boolean> {
  const cmdline = await readText(t, `/proc/${pid}/cmdline`);
  return cmdline?.split('\0').some((arg) => arg.includes(marker)) ?? false;
}

export async function signal(t: Transport, pid: number, name: 'TERM' | 'KILL'): Promise<void> {
  await t.exec(['kill', '-s', name, String(pid)]);
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Polls `check` until it is true or `timeoutMs` passes; returns the last answer. The pause
 * between two checks doubles from `intervalMs` up to `maxIntervalMs`.
 */
export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 50,
  maxIntervalMs = 500,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await delay(Math.min(intervalMs, Math.max(1, deadline - Date.now())));
    intervalMs = Math.min(intervalMs * 2, maxIntervalMs);
  }
}
