// What RealEngine asks of a driver (qemu for VMs, sandbox for containers). The engine owns the
// record, the fence and the lock; a driver owns the files it puts in the instance's folder and
// the processes it starts. Every method is idempotent: it looks at what is there and does the
// rest, because a job may run twice or die halfway.
import type { InstanceKind, PackageVersions, Resources } from '../../model/fleet.js';
import type { PatchRecord } from '../../model/instances.js';
import type { Transport } from '../../transport/transport.js';
import type { EngineImage, InstanceRuntime } from '../host-engine.js';
import type { AptPatchResult } from './apt-patch.js';
import type { HostLayout } from './host-layout.js';
import type { ImageStager, StagedFile } from './image-staging.js';

/**
 * `<dataDir>/instances/<name>/record.json`: what the host knows of an instance. Format 2 names the
 * instance `instance`; format 1 (an older vfleet) said `name`, read as `instance`.
 */
export interface InstanceRecord {
  readonly formatVersion: 1 | 2;
  readonly instance: string;
  readonly group: string;
  readonly generation: number;
  readonly kind: InstanceKind;
  readonly image: {
    readonly name: string;
    readonly os: EngineImage['os'];
    /** The inventory the spec gives for the image. */
    readonly packages: PackageVersions;
    readonly command?: readonly string[];
    readonly cmdline?: string;
    /** The image's files as staged on this host. */
    readonly staged: Readonly<Record<string, StagedFile>>;
  };
  readonly resources: Resources;
  /**
   * The inventory: from the rootfs' dpkg database when created, and again after each patch;
   * else the image's.
   */
  readonly packages: PackageVersions;
  /** The last patch, as the host ran it (absent: never patched). */
  readonly lastPatch?: PatchRecord;
  /** Driver-specific facts fixed at create (the cgroup, its limits). */
  readonly driver: Readonly<Record<string, unknown>>;
}

export interface DriverContext {
  readonly t: Transport;
  /** The host's name in the spec (for messages, and the sandbox cgroup's path). */
  readonly host: string;
  /** The instance's name (a DNS label, checked). */
  readonly instance: string;
  readonly layout: HostLayout;
  readonly stager: ImageStager;
  /** The instance's folder on the host. */
  readonly dir: string;
}

export interface DriverStatus {
  readonly running: boolean;
  readonly runtime: InstanceRuntime;
}

export interface ProvisionRequest {
  readonly name: string;
  readonly image: EngineImage;
  readonly resources: Resources;
}

/** What provisioning leaves in the instance's record. */
export interface Provisioned {
  readonly staged: Record<string, StagedFile>;
  readonly packages: PackageVersions;
  readonly driver: Record<string, unknown>;
}

/** What a start may return: the inventory read from the running instance (a VM's guest). */
// biome-ignore lint/suspicious/noConfusingVoidType: a driver that reads none returns nothing
export type Started = PackageVersions | undefined | void;

export interface InstanceDriver {
  readonly kind: InstanceKind;
  /** Stages the image and makes the instance's disk or rootfs; returns what goes in the record. */
  provision(ctx: DriverContext, request: ProvisionRequest): Promise<Provisioned>;
  /**
   * Boots it; running already is fine. A driver that reads the inventory from the running
   * instance (a VM's guest) returns it, and the record takes it.
   */
  start(ctx: DriverContext, record: InstanceRecord): Promise<Started>;
  /** Shuts it down (gracefully, then by force after the driver's timeout); stopped is fine. */
  stop(ctx: DriverContext, record: InstanceRecord): Promise<void>;
  status(ctx: DriverContext, record: InstanceRecord): Promise<DriverStatus>;
  /** Kills whatever is left and removes what the driver made outside the folder (cgroups). */
  remove(ctx: DriverContext, record: InstanceRecord | undefined): Promise<void>;
  inventory(ctx: DriverContext, record: InstanceRecord): Promise<PackageVersions>;
  /** Copies the instance's disk or rootfs into the target's (locked, fenced) folder. */
  copyOut(ctx: DriverContext, record: InstanceRecord, target: DriverContext): Promise<void>;
  /**
   * Raises packages to exactly the given versions with the instance's own package manager
   * (apt-patch.ts). Absent where the driver cannot: the engine refuses with
   * `patch-not-supported`.
   */
  patch?(
    ctx: DriverContext,
    record: InstanceRecord,
    packages: PackageVersions,
    options?: { readonly rollback?: boolean },
  ): Promise<AptPatchResult>;
}
