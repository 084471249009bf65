// The one interface the queue talks to (docs/architecture.md). Implementations:
// the embedded emulator (engines/embedded/), and real hosts through a Transport (local, ssh)
// with the qemu and sandbox drivers (engines/real/). Every mutating call carries the instance's generation:
// a host refuses a generation older than the newest it has seen (fencing), and repeating the
// newest is harmless (idempotence), so a job that runs twice never acts twice.
import type { HostOs, InstanceKind, PackageVersions, Resources } from '../model/fleet.js';
import type { InstanceRuntime, ReportedInstance } from '../model/instances.js';
import type { PlanImage } from '../model/plan.js';

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
  readonly engine: 'embedded' | 'local' | 'ssh';
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

export interface HostEngine {
  readonly host: string;
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
   * Raises the given packages to at least the given versions. Real hosts refuse with
   * `patch-not-supported` (not retryable): see engines/real/README.md.
   */
  patch(name: string, generation: number, packages: PackageVersions): Promise<EngineInstance>;
  /** Copies the instance's disk to another host, so `move` can start it there. */
  copyDisk(name: string, generation: number, to: HostEngine): Promise<void>;
}
