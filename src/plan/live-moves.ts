// Which of a plan's moves migrate live (docs/replication.md, "Live migration"): a VM that runs
// now, moving between hosts whose engines migrate to each other, and not one of a swap's
// stop-first moves (the target has no room until another instance leaves it, and a live
// migration runs on both hosts at once). The rest stop, copy the disk and start.
import { ENGINE_CAPABILITIES } from '../model/engine-capabilities.js';
import type { Fleet } from '../model/fleet.js';
import type { ObservedState } from '../model/observed.js';
import type { PlanAction } from '../model/plan.js';

export function liveMoves(
  actions: PlanAction[],
  fleet: Fleet,
  observed: ObservedState,
): PlanAction[] {
  if (!actions.some((a) => a.kind === 'move' && !a.stopFirst)) return actions;
  const engines = new Map(fleet.hosts.map((h) => [h.name, h.engine]));
  const kinds = new Map(fleet.images.map((i) => [i.name, i.kind]));
  const running = new Set(
    observed.instances.filter((i) => i.status === 'running').map((i) => i.instance),
  );
  return actions.map((a) => {
    if (a.kind !== 'move' || a.stopFirst || kinds.get(a.image) !== 'vm') return a;
    if (!running.has(a.instance)) return a;
    const from = engines.get(a.fromHost ?? '');
    const to = engines.get(a.host);
    if (!from || !to || !ENGINE_CAPABILITIES[from].migratesTo.includes(to)) return a;
    return { ...a, live: true, reason: `${a.reason} (live migration)` };
  });
}
