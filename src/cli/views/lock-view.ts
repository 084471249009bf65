// What the commands that take the fleet lock say about it.
import type { LockHolder } from '../../state/fleet-state.js';

export function lockedMessage(fleet: string, h: LockHolder): string {
  return (
    `vfleet: fleet ${fleet} is locked by apply ${h.id} (pid ${h.pid} on ${h.host}, since ${new Date(h.since).toISOString()}).\n` +
    `If that apply is gone, run: vfleet force-unlock ${h.id}`
  );
}

export function takeoverMessage(fleet: string, gone: LockHolder): string {
  return `vfleet: apply ${gone.id} (pid ${gone.pid}) is gone; taking over its lock on fleet ${fleet}.`;
}
