// A Redis that answers but refuses writes (docs/redis.md, "Faults"): out of memory under
// `noeviction` (OOM), or unable to persist (MISCONF: its AOF cannot be written, a disk full).
// Its error becomes one line naming the cause and the fix. No ioredis here: the CLI's error
// boundary uses it for any command.
import { VfleetError } from '../model/errors.js';
import { redact } from './redact.js';

/**
 * The one-line `redis-refuses-writes` error for a refused write (`e` a reply error), or
 * undefined for any other error. `shown` is where Redis is, as it may be shown; `embedded` when
 * it is the folder's private server.
 */
export function writeRefusal(
  e: unknown,
  shown?: string,
  embedded = false,
): VfleetError | undefined {
  const message = String((e as { message?: unknown } | null)?.message ?? '');
  // A script's error names the script and line after the server's own words: not for users.
  const reply = redact((message.split('\n')[0] ?? '').replace(/ script: .*$/, '')).slice(0, 200);
  const at = shown ? `Redis at ${shown}` : 'Redis';
  if (/^OOM /.test(reply)) {
    return new VfleetError(
      'redis-refuses-writes',
      `${at} is out of memory and refuses writes (${reply} — vfleet needs maxmemory-policy noeviction, so nothing is evicted): raise maxmemory (redis-cli CONFIG SET maxmemory <bytes>, and in redis.conf) or give Redis more memory, then run vfleet again`,
      { retryable: true },
    );
  }
  if (/^MISCONF /.test(reply)) {
    const where = embedded ? 'the disk that holds .vfleet/redis' : "the disk of Redis's dir";
    return new VfleetError(
      'redis-refuses-writes',
      `${at} refuses writes because it cannot persist them (${reply}): free space on ${where}, then run vfleet again (Redis accepts writes once its next write to disk succeeds)`,
      { retryable: true },
    );
  }
  return undefined;
}
