// What an apply watches while its jobs run (docs/redis.md, "Faults"): Redis coming back as
// another server — restarted (from an AOF that may lack its last second), or failed over (to a
// replica that may lack what was not replicated) — after which the apply reads the fleet again
// and resumes; and Redis refusing writes (out of memory under noeviction, or MISCONF: it cannot
// write its AOF), after which it stops and says why in one line. A write probe finds the
// refusal within a second, wherever it first hit (a job's state write, BullMQ's own scripts).
import { keyServersIdentity } from '../state/redis-client.js';
import { within } from '../state/within.js';
import { writeRefusal } from '../state/write-refusal.js';
import type { FleetSession } from './session.js';

/** How often the write probe runs while jobs do. */
const PROBE_EVERY_MS = 1_000;
/**
 * How long one probe and identity question may take: a reply that never comes (a client whose
 * server went away again) must not stop the watch asking.
 */
const PROBE_LIMIT_MS = 5_000;

export interface StoreWatch {
  /** Aborted when the server holding the fleet is another one than when the watch started. */
  readonly restarted: AbortSignal;
  /** Aborted, with the one-line `redis-refuses-writes` VfleetError, when Redis refuses writes. */
  readonly refused: AbortSignal;
  /** Stops watching (the apply's jobs are over). */
  stop(): void;
}

/**
 * Watches the fleet's Redis from `servers` (its identity when the jobs were enqueued) on: on
 * every reconnect of a client, and at the end of a round (`keyServersIdentity`). `probe` writes
 * something harmless (the plan marked current again).
 */
export function watchStore(
  session: FleetSession,
  servers: string | undefined,
  probe: () => Promise<unknown>,
): StoreWatch {
  const restarted = new AbortController();
  const refused = new AbortController();
  const { redis, target, clients } = session.connection;
  // The identity the jobs were enqueued against (the first one read, if it could not be then).
  let known = servers;
  const compare = () =>
    keyServersIdentity(redis, target).then((now) => {
      if (now === undefined) return;
      if (known === undefined) known = now;
      else if (now !== known) restarted.abort();
    });
  const unsubscribe = clients.onReconnect(() => void compare());
  let probing = false;
  const timer = setInterval(() => {
    if (probing) return;
    probing = true;
    // Asked again each second too: a reconnect whose question found the server not ready (or a
    // restart between two questions) is not missed.
    within(PROBE_LIMIT_MS, probe().then(compare), undefined)
      .then(
        () => undefined,
        (e: unknown) => {
          const refusal = writeRefusal(e, clients.shown, session.connection.embedded);
          if (refusal) refused.abort(refusal);
        },
      )
      .finally(() => {
        probing = false;
      });
  }, PROBE_EVERY_MS);
  timer.unref();
  return {
    restarted: restarted.signal,
    refused: refused.signal,
    stop() {
      clearInterval(timer);
      unsubscribe();
    },
  };
}
