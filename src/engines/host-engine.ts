// The one interface the queue, the operations and the controller talk to (docs/architecture.md).
// Implementations: the embedded emulator (engines/embedded/), and real hosts through a Transport
// (local, ssh) with the qemu and sandbox drivers (engines/real/). Every mutating call carries the
// instance's generation: a host refuses a generation older than the newest it has seen
// (fencing), and repeating the newest is harmless (idempotence), so a job that runs twice never
// acts twice.
//
// The interface is sealed: what an engine can do is data (`capabilities`, one row of
// model/engine-capabilities.ts), faults are operations on it (`inject`), and a disk moves
// between two engines through `copyDisk` on the source and `receiveDisk` on the target. Nothing
// outside engines/ reads an engine's keys or files, or asks which class or kind it is.
import type { EngineCapabilities } from '../model/engine-capabilities.js';
import { VfleetError } from '../model/errors.js';
import type {
  EngineKind,
  HostOs,
  InstanceKind,
  PackageVersions,
  Resources,
} from '../model/fleet.js';
import type { InstanceRuntime, ReportedInstance } from '../model/instances.js';
import type { PlanImage } from '../model/plan.js';
import type { Transport } from '../transport/transport.js';

/** An image as an engine creates an instance from it: a plan's (model/plan.ts). */
export type EngineImage = PlanImage;

/** What an engine needs to create an instance. */
export interface InstanceRequest {
  readonly name: string;
  readonly group: string;
  readonly generation: number;
  readonly image: EngineImage;
  readonly resources: Resources;
  /**
   * The plan the create belongs to. An engine that can check it in the same step as the create
   * (the embedded one, whose hosts live in the Redis that names the current plan) refuses a
   * create of a plan that is no longer current (`superseded`): a job that started before a new
   * apply superseded its plan cannot then add a second copy of an instance the new plan puts
   * elsewhere. Real hosts cannot check it atomically and ignore it.
   */
  readonly plan?: string;
}

/** An instance as a host reports it (model/instances.ts has the vocabulary). */
export type EngineInstance = ReportedInstance;
export type { InstanceRuntime };

export interface HostFacts {
  readonly name: string;
  readonly engine: EngineKind;
  readonly cpu: {
    readonly sockets: number;
    readonly coresPerSocket: number;
    readonly threadsPerCore: number;
  };
  readonly memoryMiB: number;
  readonly diskGiB: number;
  readonly os: HostOs;
  readonly runs: readonly InstanceKind[];
  /** Real hosts: `qemu-system-x86_64 --version`'s first line, or null without QEMU. */
  readonly qemu?: string | null;
  /** Real hosts: /dev/kvm can be opened read-write (whether nested KVM really works is not probed). */
  readonly kvm?: boolean;
  /** Real hosts: the cgroup v2 mount and its available controllers, or null without one. */
  readonly cgroups?: { readonly mount: string; readonly controllers: readonly string[] } | null;
  /** Real hosts: which sandbox limits the host can enforce (cgroup v2 memory and cpu). */
  readonly sandboxLimits?: { readonly memory: boolean; readonly cpu: boolean };
}

/**
 * A fault an operator (or a test, or the controller's drills) injects on purpose, where the
 * engine's `capabilities.faultInjection` says it can:
 *
 * - `fail`: the host is down: it answers nothing (every call is `host-unreachable`, retryable),
 *   so it also stops beating;
 * - `partition`: the host is cut off from the control plane: its instances keep running, but it
 *   cannot be reached (every call from vfleet is `host-unreachable`) and sends no heartbeats;
 * - `recover`: heals either; the host answers again with what it holds.
 */
export type HostFault = 'fail' | 'recover' | 'partition';

/** The fault a host is under right now. */
export type InjectedFault = 'failed' | 'partitioned';

/**
 * Where a copied disk lands on a target host whose disks are files (the real engines): the
 * target's transport and data folder. The target hands it to the transfer under its own lock and
 * fence, for the instance's folder (`<dataDir>/instances/<name>/`).
 */
export interface DiskLanding {
  readonly host: string;
  readonly transport: Transport;
  readonly dataDir: string;
}

/**
 * One instance's disk on its way to another host: what the source's `copyDisk` hands the
 * target's `receiveDisk`.
 */
export interface DiskTransfer {
  readonly name: string;
  readonly generation: number;
  /** The source host. */
  readonly from: string;
  /** What is installed on the disk: a create onto the copied disk reports it. */
  readonly packages: PackageVersions;
  /**
   * Writes the disk's files onto the target (source engines whose disks are files); absent where
   * the disk is data the target keeps itself (the embedded engine).
   */
  readonly writeFiles?: (landing: DiskLanding) => Promise<void>;
}

/**
 * A replica's consistency point, as the host that keeps it has it: the source's disk as it was
 * at `consistentAt` (the source's clock when the increment was taken).
 */
export interface ReplicaPoint {
  readonly instance: string;
  /** The host whose disk it replicates. */
  readonly from: string;
  /** The instance's generation on that host when the increment was taken. */
  readonly generation: number;
  /** Increments committed, the full copy counting as the first (1, 2, …). */
  readonly seq: number;
  readonly consistentAt: number;
  /** What the last increment shipped, and whether it was a full copy. */
  readonly lastBytes: number;
  readonly lastKind: 'full' | 'incremental';
}

/** What one `replicate` shipped. */
export interface ReplicationResult {
  readonly point: ReplicaPoint;
  /** Why the increment was a full copy (first sync, a new target, a lost dirty bitmap…). */
  readonly fullReason?: string;
  /** The whole sync: the increment taken, shipped and committed on the target. */
  readonly durationMs: number;
}

/** One increment on its way to the replica's host: what `replicate` hands `receiveReplica`. */
export interface ReplicaIncoming {
  readonly name: string;
  readonly from: string;
  readonly generation: number;
  readonly kind: 'full' | 'incremental';
  readonly bytes: number;
  readonly consistentAt: number;
  /** The seq the target must be at before this one (0 for a full copy). */
  readonly after: number;
  /** What is installed on the disk: a restart from the replica reports it. */
  readonly packages: PackageVersions;
  /** Engines whose disks are files: writes the increment into the target's replica folder. */
  readonly writeFiles?: (landing: DiskLanding) => Promise<void>;
  /** Engines whose disks are files: the increment file's chain, number, checksum and path. */
  readonly file?: {
    readonly chain: string;
    readonly seq: number;
    readonly sha256: string;
    readonly path: string;
    readonly durationMs: number;
    readonly fullReason?: string;
  };
}

/** What a patch job tells the engine beyond the packages (the plan's patch action). */
export interface PatchOptions {
  /**
   * The packages whose baseline entry says `reboot: true`: the embedded engine's emulation of
   * an update that asks for a restart. Real hosts ignore it (dpkg's own flag says).
   */
  readonly reboot?: readonly string[];
  /**
   * The group's `onFailure: rollback`: a failed patch puts the instance back as it was before
   * it, from a snapshot. The embedded engine emulates it; real hosts take an internal snapshot
   * of the VM before the install and `loadvm` it on failure (real/vm-patch.ts); sandboxes (which
   * have no snapshot) are refused rollback by the spec's checks.
   */
  readonly rollback?: boolean;
}

/** What a live migration did (HostEngine.migrate). */
export interface MigrationOutcome {
  /** The instance as the target has it now. */
  readonly instance: EngineInstance;
  /** The pause the guest saw, ms (real hosts: an upper bound measured from the outside). */
  readonly downtimeMs: number;
  /** Real hosts: QEMU's own `downtime` (the source's stop to the last byte sent), ms. */
  readonly qemuDowntimeMs?: number;
  /** Real hosts: the whole migration, the disk's mirror included, ms. */
  readonly durationMs?: number;
}

export interface HostEngine {
  readonly host: string;
  /** The host's `engine:` in the spec: which row of the capabilities table is this engine's. */
  readonly engine: EngineKind;
  /** What this engine can do: its row of model/engine-capabilities.ts. */
  readonly capabilities: EngineCapabilities;
  facts(): Promise<HostFacts>;
  list(): Promise<EngineInstance[]>;
  /**
   * Per instance name, the newest generation this host has seen — destroyed instances'
   * tombstones included — so that a plan made without them (a state that forgot a destroyed
   * instance, or was lost) can go above them.
   */
  fences(): Promise<ReadonlyMap<string, number>>;
  /** One instance as the host has it, or undefined: what a job reads before it acts. */
  describe(name: string): Promise<EngineInstance | undefined>;
  /** The instance's installed packages, name → version. */
  inventory(name: string): Promise<PackageVersions>;
  /** Creates and boots the instance; if it already exists at this generation, returns it. */
  create(request: InstanceRequest): Promise<EngineInstance>;
  start(name: string, generation: number): Promise<EngineInstance>;
  stop(name: string, generation: number): Promise<EngineInstance>;
  /** Removes the instance and everything it had on the host; absent already is fine. */
  destroy(name: string, generation: number): Promise<void>;
  /**
   * Raises the given packages to at least the given versions (a package already there is left
   * alone). The embedded engine records them; real hosts install exactly those versions with
   * the instance's own APT — in a sandbox's rootfs, in a VM's guest over ssh — and report what
   * dpkg then has, with `lastPatch` (docs/patching.md); a VM whose image gives no `guest` is
   * refused with `patch-not-supported` (not retryable). Only the kinds `capabilities.patch`
   * names are patched.
   */
  patch(
    name: string,
    generation: number,
    packages: PackageVersions,
    options?: PatchOptions,
  ): Promise<EngineInstance>;
  /**
   * Copies the instance's disk to another host, so `move` can start it there: refused
   * (`engine-mismatch`) unless `to`'s engine is one `capabilities.copiesDiskTo` names, or `to` is
   * this host. Runs under this host's fence for the instance, then `to.receiveDisk`.
   */
  copyDisk(name: string, generation: number, to: HostEngine): Promise<void>;
  /**
   * copyDisk's other half, on the target: under the target's own lock and fence for the
   * instance (an older generation is `stale-generation`), and never over an instance the target
   * has already (a copy-disk job run again after the move went on does nothing).
   */
  receiveDisk(transfer: DiskTransfer): Promise<void>;
  /**
   * Ships the next increment of a VM's disk to `to` (its failover host; an engine that
   * `capabilities.replicatesTo` names), a full copy when `options.full` gives a reason for one or
   * the engine finds it must (the target's replica is missing or behind, a lost dirty bitmap).
   * Refused for an instance this host does not have at `generation` (`stale-generation`).
   */
  replicate(
    name: string,
    generation: number,
    to: HostEngine,
    options?: { readonly full?: string },
  ): Promise<ReplicationResult>;
  /** replicate's other half: commits the increment into the replica this host keeps. */
  receiveReplica(incoming: ReplicaIncoming): Promise<ReplicaPoint>;
  /** The replicas this host keeps, by instance (a replica is kept until dropped). */
  replicas(): Promise<ReadonlyMap<string, ReplicaPoint>>;
  /**
   * Makes the replica this host keeps of `name` the disk its next create boots from (a restart
   * after its host failed): as if the disk had been copied here. `replica-missing` without one.
   */
  restoreReplica(name: string, generation: number): Promise<ReplicaPoint>;
  /** Forgets the replica of `name` (its failover host moved, or it is gone); absent is fine. */
  dropReplica(name: string): Promise<void>;
  /**
   * Moves a running VM to `to` without stopping it (live migration; `to`'s engine one that
   * `capabilities.migratesTo` names), at `generation` on both hosts. `migration-failed` when it
   * cannot (the caller falls back to stop, copy, start); the downtime the guest saw, measured.
   */
  migrate(name: string, generation: number, to: HostEngine): Promise<MigrationOutcome>;
  /**
   * Injects a fault on purpose; refused (`not-embedded`) where `capabilities.faultInjection` is
   * false.
   */
  inject(fault: HostFault): Promise<void>;
  /** The fault the host is under, or undefined (always undefined without fault injection). */
  injectedFault(): Promise<InjectedFault | undefined>;
  /**
   * Patches the host itself and reboots it (`vfleet host patch`, the host drained first): its
   * patch level goes up by one. Refused (`host-patch-not-built`) where `capabilities.hostPatch`
   * is false: real hosts' package manager and reboot are not built (docs/patching.md, "Hosts").
   */
  patchHost(rebootMs: number): Promise<HostPatchLevel>;
}

/** A host's own patch level: how many times `patchHost` patched it, and when last. */
export interface HostPatchLevel {
  readonly level: number;
  readonly at: number;
}

/**
 * copyDisk's check, the same for every engine: the target's engine must be one the source's
 * capabilities can copy a disk to, and not the source host itself.
 */
export function checkCopyTarget(from: HostEngine, name: string, to: HostEngine): void {
  if (!from.capabilities.copiesDiskTo.includes(to.engine)) {
    throw new VfleetError(
      'engine-mismatch',
      `cannot copy ${name} from ${from.engine} host ${from.host} to ${to.engine} host ${to.host}: a ${from.engine} disk can go to ${from.capabilities.copiesDiskTo.join(' or ')} hosts only`,
    );
  }
  if (to === from || to.host === from.host) {
    throw new VfleetError('engine-mismatch', `cannot copy ${name} from ${from.host} to itself`);
  }
}

/**
 * replicate's check, the same for every engine: the target's engine must be one the source's
 * capabilities can keep a replica on, and not the source host itself.
 */
export function checkReplicaTarget(from: HostEngine, name: string, to: HostEngine): void {
  if (!from.capabilities.replicatesTo.includes(to.engine)) {
    const can = from.capabilities.replicatesTo;
    throw new VfleetError(
      'engine-mismatch',
      `cannot replicate ${name} from ${from.engine} host ${from.host} to ${to.engine} host ${to.host}: ${can.length === 0 ? `${from.engine} hosts replicate no disks yet` : `a ${from.engine} disk is replicated to ${can.join(' or ')} hosts only`}`,
    );
  }
  if (to === from || to.host === from.host) {
    throw new VfleetError(
      'engine-mismatch',
      `cannot replicate ${name} from ${from.host} to itself`,
    );
  }
}

/** The refusal of an engine that takes no injected faults. */
export function noFaultInjection(engine: HostEngine): VfleetError {
  return new VfleetError(
    'not-embedded',
    `host ${engine.host} uses the ${engine.engine} engine, which takes no injected faults; only embedded hosts can be failed on purpose`,
  );
}
