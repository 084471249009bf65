// The fleet lock: one writer of a fleet's state at a time (apply, destroy, host forget). Renewed
// while its holder works; a holder that ran on this machine and is gone is taken over.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { LockHolder } from '../state/fleet-state.js';
import { isProcessAlive } from '../state/process-alive.js';
import { writeRefusal } from '../state/write-refusal.js';
import type { FleetSession } from './session.js';

const LOCK_TTL_MS = 60_000;

export type Locked<T> =
  | { readonly ok: true; readonly value: T }
  /** Another holder has it: who, since when (the CLI says how to free it). */
  | { readonly ok: false; readonly holder: LockHolder };

/**
 * Runs `act` holding the fleet lock (renewed while it runs). `onTakeover` hears of a holder that
 * ran on this machine and is gone (killed, crashed), whose lock was taken over.
 */
export async function underFleetLock<T>(
  session: FleetSession,
  act: () => Promise<T>,
  onTakeover: (gone: LockHolder) => void = () => undefined,
): Promise<Locked<T>> {
  const holder: LockHolder = {
    id: randomUUID().slice(0, 8),
    pid: process.pid,
    host: hostname(),
    since: Date.now(),
  };
  let lock = await session.state.acquireLock(holder, LOCK_TTL_MS);
  if (!lock.ok && lock.holder.host === hostname() && !isProcessAlive(lock.holder.pid)) {
    // Nobody is writing under it.
    const gone = lock.holder;
    if ((await session.state.forceUnlock(gone.id)).ok) onTakeover(gone);
    lock = await session.state.acquireLock(holder, LOCK_TTL_MS);
  }
  if (!lock.ok) return { ok: false, holder: lock.holder };
  const renew = setInterval(
    // A renewal that fails (the store went away) is reported by the store's watch, not here.
    () => void session.state.renewLock(holder.id, LOCK_TTL_MS).catch(() => undefined),
    LOCK_TTL_MS / 3,
  );
  try {
    return { ok: true, value: await act() };
  } finally {
    clearInterval(renew);
    // With the store gone, or refusing writes (a disk full), the lock cannot be released; the
    // next apply on this machine removes it (its holder's process is gone), elsewhere
    // `vfleet force-unlock` does (it expires in LOCK_TTL_MS anyway).
    if (!session.connection.clients.signal.aborted) {
      await session.state.releaseLock(holder.id).catch((e: unknown) => {
        if (writeRefusal(e) === undefined) throw e;
      });
    }
  }
}
