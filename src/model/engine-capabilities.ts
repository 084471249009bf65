// What each kind of engine can do, as data: the planner, the refresh and the fault-injection
// commands ask this table instead of testing an engine's kind. An engine reports its own row
// (`HostEngine.capabilities`), so a new engine is one new row, not a hunt for `=== 'embedded'`.
import type { EngineKind } from './fleet.js';

export interface EngineCapabilities {
  /** Raises an instance's packages to a baseline itself (`patch` jobs are planned for it). */
  readonly patch: boolean;
  /**
   * Reports facts of its own (CPU, memory, OS read from the machine) that may disagree with the
   * spec; an emulated host's facts are the spec's, so there is nothing to compare.
   */
  readonly ownFacts: boolean;
  /** The engines `copyDisk` can copy an instance's disk to (a move between them). */
  readonly copiesDiskTo: readonly EngineKind[];
  /** Can be made to fail, recover or lose the control plane on purpose (`vfleet host fail`). */
  readonly faultInjection: boolean;
}

export const ENGINE_CAPABILITIES: Readonly<Record<EngineKind, EngineCapabilities>> = {
  embedded: { patch: true, ownFacts: false, copiesDiskTo: ['embedded'], faultInjection: true },
  local: { patch: false, ownFacts: true, copiesDiskTo: ['local', 'ssh'], faultInjection: false },
  ssh: { patch: false, ownFacts: true, copiesDiskTo: ['local', 'ssh'], faultInjection: false },
};
