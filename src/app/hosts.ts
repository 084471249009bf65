// Operations on one host and on the fleet lock: forget a host that is gone for good, inject a
// fault on purpose (the embedded engine takes them), free the lock of an apply that is gone.

import type { HostFault } from '../engines/engine-set.js';
import { VfleetError } from '../model/errors.js';
import type { ForceUnlockResult, LockHolder } from '../state/fleet-state.js';
import { underFleetLock } from './fleet-lock.js';
import type { FleetSession } from './session.js';

export type ForgetResult =
  | { readonly ok: true; readonly forgotten: readonly string[] }
  | { readonly ok: false; readonly holder: LockHolder };

/**
 * A host gone for good (no longer in the spec): its instances are dropped from the state, so the
 * next plan creates them elsewhere. Nothing on the host is touched: vfleet cannot reach it.
 */
export async function forgetHost(
  session: FleetSession,
  name: string,
  onTakeover?: (gone: LockHolder) => void,
): Promise<ForgetResult> {
  if (session.fleet.hosts.some((h) => h.name === name)) {
    throw new VfleetError(
      'host-in-spec',
      `host ${name} is in ${session.file}: to move its instances off it, set \`drain: true\` on it and apply; forget only a host the spec no longer names`,
    );
  }
  const locked = await underFleetLock(
    session,
    async () => {
      const { instances } = await session.state.readAll();
      const gone = instances.filter((i) => i.host === name).map((i) => i.instance);
      for (const instance of gone) {
        await session.state.deleteInstance(instance);
        await session.state.appendEvent({
          at: Date.now(),
          instance,
          action: 'forget',
          host: name,
          outcome: 'done',
          error: null,
        });
      }
      return gone;
    },
    onTakeover,
  );
  return locked.ok ? { ok: true, forgotten: locked.value } : locked;
}

/** `vfleet host fail|partition|recover`: refused for an engine that takes no injected faults. */
export async function injectFault(
  session: FleetSession,
  name: string,
  fault: HostFault,
): Promise<void> {
  if (!session.fleet.hosts.some((h) => h.name === name)) {
    throw new VfleetError('unknown-host', `no host ${name} in ${session.file}`);
  }
  await session.engines.inject(name, fault);
}

export function forceUnlock(session: FleetSession, id: string): Promise<ForceUnlockResult> {
  return session.state.forceUnlock(id);
}
