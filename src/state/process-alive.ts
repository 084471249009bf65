// Is a process (named by a pidfile or a lock file) still there? Signal 0 checks without touching
// it; on Linux a zombie (exited, not yet reaped — common in containers whose init does not reap
// orphaned daemons) counts as gone, or waiting for a stopped server would never end.
import { readFileSync } from 'node:fs';

function procField(pid: number, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  const stat = procField(pid, 'stat');
  // /proc/<pid>/stat is "pid (comm) state …"; comm may hold spaces and parentheses.
  const state = stat?.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/**
 * True when the process is known to be a redis-server. Only Linux can tell (from /proc); where it
 * cannot be told this is false, so vfleet never signals a process it cannot identify.
 */
export function isRedisServerProcess(pid: number): boolean {
  const cmdline = procField(pid, 'cmdline');
  return cmdline !== undefined && /(^|\/)redis-server(\0|\s|$)/.test(cmdline);
}
