// An exclusive lock file, so that vfleet processes started at the same moment in one folder do not
// each start a redis-server. Created with the `wx` flag (O_CREAT|O_EXCL: exactly one creator
// wins). A lock whose holder process is gone, or that is older than `staleMs`, is stale: it is
// broken by renaming it aside first, so that of two processes breaking the same stale lock only
// one succeeds, and neither deletes the fresh lock the other has just taken.
import { randomUUID } from 'node:crypto';
import { link, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { VfleetError } from '../model/errors.js';
import { isProcessAlive } from './process-alive.js';

export interface FileLockOptions {
  /** How long to wait for another holder before giving up. */
  readonly timeoutMs: number;
  /** A lock older than this is stale even if its process lives (a hung or reused pid). */
  readonly staleMs: number;
  /** What the lock guards, for the timeout message. */
  readonly purpose: string;
}

interface LockContent {
  readonly pid: number;
  readonly token: string;
  readonly since: number;
}

const POLL_MS = 25;

function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

async function readLock(path: string): Promise<{ text: string; content: LockContent | null }> {
  const text = await readFile(path, 'utf8');
  try {
    const parsed = JSON.parse(text) as LockContent;
    return { text, content: typeof parsed?.pid === 'number' ? parsed : null };
  } catch {
    // Created but not written yet (the holder is between open and write), or garbage.
    return { text, content: null };
  }
}

async function isStale(path: string, content: LockContent | null, staleMs: number) {
  if (content) return !isProcessAlive(content.pid) || Date.now() - content.since > staleMs;
  return Date.now() - (await stat(path)).mtimeMs > staleMs;
}

/** Renames the stale lock aside; if what was renamed is not what was judged stale, puts it back. */
async function breakStaleLock(path: string, judged: string): Promise<void> {
  const aside = `${path}.stale-${process.pid}-${randomUUID()}`;
  try {
    await rename(path, aside);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return; // someone else broke it, or its holder released it
    throw e;
  }
  const taken = await readFile(aside, 'utf8');
  if (taken !== judged) {
    // A fresh lock was taken between our read and our rename: give it back unless yet another
    // one exists (then its holder's double check, not this lock, keeps the server single).
    await link(aside, path).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}

export async function withFileLock<T>(
  path: string,
  options: FileLockOptions,
  body: () => Promise<T>,
): Promise<T> {
  const mine: LockContent = { pid: process.pid, token: randomUUID(), since: Date.now() };
  const text = JSON.stringify(mine);
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    try {
      await writeFile(path, text, { flag: 'wx', mode: 0o600 });
      break;
    } catch (e) {
      if (errnoCode(e) !== 'EEXIST') throw e;
    }
    try {
      const held = await readLock(path);
      if (await isStale(path, held.content, options.staleMs)) {
        await breakStaleLock(path, held.text);
        continue;
      }
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw e;
      continue; // released between our attempt and our read: try again at once
    }
    if (Date.now() > deadline) {
      throw new VfleetError(
        'lock-timeout',
        `another vfleet process has held ${path} for more than ${options.timeoutMs} ms while ${options.purpose}; if none is running, remove that file`,
        { retryable: true },
      );
    }
    await delay(POLL_MS);
  }
  try {
    return await body();
  } finally {
    // Release only our own lock: if we were too slow and it was broken as stale, it is not ours.
    const now = await readFile(path, 'utf8').catch(() => '');
    if (now === text) await unlink(path).catch(() => undefined);
  }
}
