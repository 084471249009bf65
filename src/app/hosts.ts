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

/**
 * `vfleet host fail|partition|recover`: refused for an engine that takes no injected faults —
 * except `recover` of a host an operator fenced, which withdraws the fence on any engine.
 */
export async function injectFault(
  session: FleetSession,
  name: string,
  fault: HostFault,
): Promise<void> {
  checkHost(session, name);
  if (fault === 'recover') {
    const wasFenced = await session.control.clearFenced(name);
    if (wasFenced) {
      await session.state.appendEvent({
        at: Date.now(),
        type: 'host-unfenced',
        host: name,
        cause: 'an operator withdrew the fence (vfleet host recover)',
      });
    }
    // On an engine without fault injection, recover only withdraws the fence.
    if (wasFenced && !session.engines.capabilities(name).faultInjection) return;
  }
  await session.engines.inject(name, fault);
  await session.state.appendEvent({
    at: Date.now(),
    type: `fault-${fault}`,
    host: name,
    cause: `injected on purpose (vfleet host ${fault})`,
  });
}

/**
 * `vfleet host fenced NAME`: an operator asserts the host is off (powered down, its instances
 * dead), as Kubernetes' out-of-service taint does. The controller restarts its instances at once,
 * without waiting for the lease to age; vfleet cannot check the assertion, so a host that is in
 * fact running its instances would then run them twice — say so in the command's help.
 */
export async function fenceHost(session: FleetSession, name: string, by: string): Promise<void> {
  checkHost(session, name);
  const at = Date.now();
  await session.control.setFenced(name, { at, by });
  await session.state.appendEvent({
    at,
    type: 'host-fenced-by-operator',
    host: name,
    cause: `${by} asserted the host is off (vfleet host fenced)`,
  });
}

/**
 * `vfleet host drain|undrain NAME`: the host drains (nothing new lands on it, what runs there
 * moves off at the next apply — running VMs live where the engines can) as if the spec said
 * `drain: true`, until undrained. Takes effect for sessions opened after it.
 */
export async function drainHost(
  session: FleetSession,
  name: string,
  drained: boolean,
  by: string,
): Promise<void> {
  checkHost(session, name);
  await session.control.setDrained(name, drained);
  await session.state.appendEvent({
    at: Date.now(),
    type: drained ? 'host-draining' : 'host-undrained',
    host: name,
    cause: `${by}: vfleet host ${drained ? 'drain' : 'undrain'}`,
  });
}

function checkHost(session: FleetSession, name: string): void {
  if (!session.fleet.hosts.some((h) => h.name === name)) {
    throw new VfleetError('unknown-host', `no host ${name} in ${session.file}`);
  }
}

export function forceUnlock(session: FleetSession, id: string): Promise<ForceUnlockResult> {
  return session.state.forceUnlock(id);
}
