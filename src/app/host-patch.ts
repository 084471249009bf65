// `vfleet host patch`: the hosts patched wave by wave (Ganeti's hroller; docs/patching.md,
// "Hosts"). The waves are plan/host-rollout.ts's; this file holds the steps a front end runs for
// each wave's host besides the drain and its apply — the host's own patch (an engine operation),
// and waiting until the host is healthy again — and the rollout's plan from the state.
import { setTimeout as sleep } from 'node:timers/promises';
import type { HostPatchLevel } from '../engines/host-engine.js';
import { VfleetError } from '../model/errors.js';
import type { Fleet } from '../model/fleet.js';
import type { ObservedPlacement } from '../model/placement.js';
import { drainLoses, type HostRollout, planHostRollout } from '../plan/host-rollout.js';
import { type HostJudgement, judgeHosts } from './host-health.js';
import type { FleetSession } from './session.js';

/**
 * The waves that patch `names` (every spec host when empty), from the state's instances and the
 * hosts an operator drains. Refused in one line: a name the spec lacks, a host whose engine
 * cannot patch a host (`host-patch-not-built`).
 */
export async function hostRolloutOf(
  session: FleetSession,
  names: readonly string[],
): Promise<HostRollout> {
  const fleet = session.fleet;
  const chosen = names.length === 0 ? fleet.hosts.map((h) => h.name) : [...new Set(names)];
  const unknown = chosen.filter((n) => !fleet.hosts.some((h) => h.name === n));
  if (unknown.length > 0) {
    throw new VfleetError('unknown-host', `no host ${unknown.join(', ')} in ${session.file}`);
  }
  const cannot = chosen.filter((n) => !session.engines.capabilities(n).hostPatch);
  if (cannot.length > 0) {
    const engines = [
      ...new Set(fleet.hosts.filter((h) => cannot.includes(h.name)).map((h) => h.engine)),
    ];
    throw new VfleetError(
      'host-patch-not-built',
      `cannot patch ${cannot.join(', ')}: patching a ${engines.join(' or ')} host (its own apt and reboot over its transport) is not built; only embedded hosts are patched (docs/patching.md, "Hosts")`,
    );
  }
  const { fleet: withDrains, observed } = await currentPlacement(session);
  return planHostRollout(withDrains, observed, chosen);
}

/**
 * Before a wave's drain: the instances the scheduler could no longer place with `hosts` draining,
 * asked of the state as it is now (earlier waves moved instances since the waves were planned).
 */
export async function waveLoses(
  session: FleetSession,
  hosts: readonly string[],
): Promise<string[]> {
  const { fleet, observed } = await currentPlacement(session);
  return drainLoses(fleet, observed, hosts);
}

/** The spec's hosts with an operator's drains, and where the state has the instances. */
async function currentPlacement(
  session: FleetSession,
): Promise<{ readonly fleet: Fleet; readonly observed: ObservedPlacement }> {
  const [{ instances }, drained] = await Promise.all([
    session.state.readAll(),
    session.control.drained(),
  ]);
  const fleet: Fleet = {
    ...session.fleet,
    hosts: session.fleet.hosts.map((h) =>
      drained.has(h.name) && !h.drain ? { ...h, drain: true } : h,
    ),
  };
  return { fleet, observed: { instances } };
}

/** The drained host's own patch and reboot (HostEngine.patchHost), recorded as an event. */
export async function patchDrainedHost(
  session: FleetSession,
  name: string,
  rebootMs: number,
): Promise<HostPatchLevel> {
  const patched = await session.engines.engine(name).patchHost(rebootMs);
  await session.state.appendEvent({
    at: Date.now(),
    type: 'host-patched',
    host: name,
    level: patched.level,
    cause: 'vfleet host patch',
  });
  return patched;
}

/**
 * Waits until `name` answers and its health is `ok` (undrained, its lease fresh), polling every
 * `pollMs` up to `timeoutMs`; the last judgement when it never is.
 */
export async function waitHostHealthy(
  session: FleetSession,
  name: string,
  timeoutMs: number,
  pollMs = 100,
): Promise<{ readonly ok: boolean; readonly health: HostJudgement['health'] | 'unanswering' }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const answers = await session.engines
      .engine(name)
      .list()
      .then(
        () => true,
        () => false,
      );
    const judged = (await judgeHosts(session, Date.now(), new Map([[name, answers]]))).get(name);
    const health = answers ? (judged?.health ?? 'suspect') : 'unanswering';
    if (health === 'ok') return { ok: true, health };
    if (Date.now() >= deadline) return { ok: false, health };
    await sleep(pollMs);
  }
}
