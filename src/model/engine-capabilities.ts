// What each kind of engine can do, as data: the planner, the refresh and the fault-injection
// commands ask this table instead of testing an engine's kind. An engine reports its own row
// (`HostEngine.capabilities`), so a new engine is one new row, not a hunt for `=== 'embedded'`.
import type { EngineKind, InstanceKind } from './fleet.js';

/** The spec's host fields that say how an engine reaches a host and where it keeps things. */
export const HOST_FIELDS = [
  'address',
  'port',
  'user',
  'hostKey',
  'identityFile',
  'dataDir',
] as const;
export type HostField = (typeof HOST_FIELDS)[number];

export interface EngineCapabilities {
  /**
   * The kinds of instance whose packages it raises to a baseline itself (`patch` jobs are
   * planned for them): the embedded engine records versions for any; real hosts install them
   * with APT into a sandbox's root or, over ssh, into a VM's guest (engines/real/apt-patch.ts).
   */
  readonly patch: readonly InstanceKind[];
  /**
   * Patches a VM from inside its running guest, which needs the image's `guest` (a way in over
   * ssh): a VM of an image without one is not patched there (the audit reports it).
   */
  readonly patchesVmsInGuest: boolean;
  /**
   * Reports facts of its own (CPU, memory, OS read from the machine) that may disagree with the
   * spec; an emulated host's facts are the spec's, so there is nothing to compare.
   */
  readonly ownFacts: boolean;
  /** The engines `copyDisk` can copy an instance's disk to (a move between them). */
  readonly copiesDiskTo: readonly EngineKind[];
  /** The engines `replicate` can keep a VM's replica on (docs/replication.md); none: no replication. */
  readonly replicatesTo: readonly EngineKind[];
  /**
   * The engines a running VM can be moved to without stopping it (live migration); a move to
   * another engine, or of a sandbox, stops, copies and starts.
   */
  readonly migratesTo: readonly EngineKind[];
  /**
   * Can be made to fail, lose the control plane and recover on purpose (`vfleet host
   * fail|partition|recover`, HostEngine.inject).
   */
  readonly faultInjection: boolean;
  /**
   * Whether the engine patches the host itself (`HostEngine.patchHost`, `vfleet host patch`): the
   * embedded engine records a patch level and takes a reboot's latency; real hosts not yet.
   */
  readonly hostPatch: boolean;
  /**
   * Stops its own instances when it has been cut off from the control plane for a lease ttl (a
   * watchdog on the host): only then may the controller restart a lost host's instances elsewhere
   * without an operator's `vfleet host fenced` (model/host-health.ts). Embedded hosts through
   * their emulated agent, real ones through the vfleet agent's watchdog (engines/real/host-agent.ts).
   */
  readonly selfFences: boolean;
  /** The host fields the engine reads; a host that sets another is warned that it is ignored. */
  readonly hostFields: readonly HostField[];
  /** Of those, the ones every host of the engine must set (an error without). */
  readonly requiredHostFields: readonly HostField[];
  /** Where the engine keeps its hosts' instances, as a message says it ("in Redis"). */
  readonly keepsInstances: string;
}

export const ENGINE_CAPABILITIES: Readonly<Record<EngineKind, EngineCapabilities>> = {
  embedded: {
    patch: ['vm', 'container'],
    patchesVmsInGuest: false,
    ownFacts: false,
    copiesDiskTo: ['embedded'],
    replicatesTo: ['embedded'],
    migratesTo: ['embedded'],
    faultInjection: true,
    hostPatch: true,
    selfFences: true,
    hostFields: [],
    requiredHostFields: [],
    keepsInstances: 'in Redis',
  },
  local: {
    patch: ['container', 'vm'],
    patchesVmsInGuest: true,
    ownFacts: true,
    copiesDiskTo: ['local', 'ssh'],
    replicatesTo: ['local', 'ssh'],
    migratesTo: ['local', 'ssh'],
    faultInjection: false,
    hostPatch: false,
    selfFences: true,
    hostFields: ['dataDir'],
    requiredHostFields: [],
    keepsInstances: 'in dataDir on this machine',
  },
  ssh: {
    patch: ['container', 'vm'],
    patchesVmsInGuest: true,
    ownFacts: true,
    copiesDiskTo: ['local', 'ssh'],
    replicatesTo: ['local', 'ssh'],
    migratesTo: ['local', 'ssh'],
    faultInjection: false,
    hostPatch: false,
    selfFences: true,
    hostFields: ['address', 'port', 'user', 'hostKey', 'identityFile', 'dataDir'],
    requiredHostFields: ['address', 'hostKey'],
    keepsInstances: 'in dataDir on the host',
  },
};

/** The engines that read a host field, for messages ("not ssh"). */
export function enginesReading(field: HostField): EngineKind[] {
  return (Object.keys(ENGINE_CAPABILITIES) as EngineKind[]).filter((kind) =>
    ENGINE_CAPABILITIES[kind].hostFields.includes(field),
  );
}
