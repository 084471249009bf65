// The normalized fleet: what the spec says, with every default applied and every replica expanded.
// Field shapes come from the generated spec types, so a schema change that these types do not
// follow fails to compile (habit 6, docs/architecture.md).
import type {
  Arch,
  FleetDocument,
  HostOs,
  Image as ImageSpec,
  InstanceGroup as InstanceGroupSpec,
  InstanceKind,
  LicensePool as LicensePoolSpec,
  OsFamily,
  PatchBaseline as PatchBaselineSpec,
} from './fleet-spec.generated.js';

export type { Arch, FleetDocument, HostOs, InstanceKind, OsFamily };

export type Labels = Readonly<Record<string, string>>;
export type PackageVersions = Readonly<Record<string, string>>;

/** The failure domain "host" means every host is its own domain; anything else is a label key. */
export const HOST_DOMAIN = 'host';

export interface FailoverPolicy {
  /** Simultaneous domain failures to survive; 0 turns standby reservation off. */
  readonly tolerate: number;
  /** "host" or a host label key. */
  readonly domain: string;
  /**
   * When a failed host returns: `manual` (the default) leaves what restarted elsewhere where it
   * is; `auto` lets the scheduler move instances back (plan shows the moves).
   */
  readonly failback: 'manual' | 'auto';
  /** `failover.replication`: protected VMs' disks are replicated to their failover hosts. */
  readonly replication?: ReplicationPolicy | undefined;
}

/** How a protected VM's disk is replicated to its failover host (docs/replication.md). */
export interface ReplicationPolicy {
  /** How often an increment is shipped. */
  readonly intervalMs: number;
  /** The oldest a replica may be before it is `rpo-exceeded`. */
  readonly maxRpoMs: number;
}

/** A protected VM with no usable replica on its failover host: restart from the image, or wait. */
export type OnMissingReplica = 'image' | 'wait';

export type EngineKind = 'embedded' | 'local' | 'ssh';

export interface HostCpu {
  readonly sockets: number;
  readonly coresPerSocket: number;
  readonly threadsPerCore: number;
}

export interface SshEndpoint {
  readonly address: string;
  readonly port: number;
  readonly user: string;
  readonly hostKey: string;
  /** Absent: use the ssh-agent. */
  readonly identityFile?: string;
}

export interface Host {
  readonly name: string;
  readonly engine: EngineKind;
  /** Present when engine is ssh. */
  readonly ssh?: SshEndpoint;
  readonly dataDir: string;
  readonly labels: Labels;
  readonly cpu: HostCpu;
  readonly memoryMiB: number;
  readonly diskGiB: number;
  readonly os: HostOs;
  readonly runs: readonly InstanceKind[];
  /** Being retired: nothing is placed on it, so its instances move off (it stays reachable). */
  readonly drain: boolean;
  /**
   * Not from the spec: set by plan from the hosts' health (app/host-health.ts) when the host is
   * lost long enough, or fenced, that its instances may run elsewhere. Nothing is placed on it or
   * reserved there, and its protected instances restart on their failover hosts.
   */
  readonly down?: true;
  readonly overcommit: { readonly cpu: number; readonly memory: number };
  readonly licenses: readonly string[];
  /** The baseline the host itself is audited against. */
  readonly patchBaseline: string | undefined;
  /** The host's own package inventory; `packagesFrom` is resolved by the loader's caller. */
  readonly packages: PackageVersions;
  readonly packagesFrom: string | undefined;
}

/**
 * vm on a real host: how vfleet reaches its running guest (the image's `guest`, defaults
 * applied): ssh to `port` in the guest as `user`, through a port QEMU forwards on the host's
 * loopback, the guest's key pinned; `forwards` are what the guest may reach of its host
 * (10.0.2.100:port in the guest → 127.0.0.1:hostPort on the host).
 */
export interface GuestAccess {
  readonly user: string;
  readonly port: number;
  readonly hostKey: string;
  readonly identityFile: string;
  readonly forwards: readonly { readonly port: number; readonly hostPort: number }[];
}

export interface Image {
  readonly name: string;
  readonly kind: InstanceKind;
  readonly os: ImageSpec['os'];
  readonly source: NonNullable<ImageSpec['source']> | undefined;
  /** vm: how vfleet reaches the running guest (absent: it does not, and patches none there). */
  readonly guest: GuestAccess | undefined;
  /** container: the sandbox's argument vector (real engines); default /sbin/init. */
  readonly command: readonly string[];
  readonly allowEmulation: boolean;
  /** The inventory the spec gives inline; `packagesFrom` is resolved by the loader's caller. */
  readonly packages: PackageVersions;
  readonly packagesFrom: string | undefined;
  readonly licenses: readonly string[];
}

export type LicenseMetric = LicensePoolSpec['metric'];

export interface LicensePool {
  readonly name: string;
  readonly product: string | undefined;
  readonly metric: LicenseMetric;
  readonly entitlement: number;
  readonly minimumPerHost: number;
  readonly minimumPerProcessor: number;
  readonly minimumPerInstance: number;
  /** Absent: one licensing of a host covers any number of instances. */
  readonly instancesPerUnit: number | undefined;
  readonly coverFailover: boolean;
}

export interface PatchBaseline {
  readonly name: string;
  readonly appliesTo: PatchBaselineSpec['appliesTo'];
  /** Package → the lowest compliant version (an entry's `version`). */
  readonly minimum: PackageVersions;
  /** The packages whose entry says `security: true` (absent: none). */
  readonly security?: readonly string[];
  /** The packages whose entry says `reboot: true`: the embedded engine's emulation (absent: none). */
  readonly reboot?: readonly string[];
}

/**
 * A maintenance window (docs/patching.md): open from every time `cron` names (read in
 * `timezone`) for `durationMs`. Patches start only while it is open.
 */
export interface PatchWindow {
  readonly cron: string;
  /** As the spec wrote it ("4h"), for people. */
  readonly duration: string;
  readonly durationMs: number;
  /** An IANA zone; UTC unless set. */
  readonly timezone: string;
}

/** How a group's replicas are patched (`instances[].patch`). */
export interface RolloutPolicy {
  /** Replicas patched at once: a batch; the next batch waits for the last one. */
  readonly maxUnavailable: number;
  /** stop: the group's rollout stops at a failure; rollback: also restore the failed replica's snapshot. */
  readonly onFailure: 'stop' | 'rollback';
}

export const DEFAULT_ROLLOUT: RolloutPolicy = { maxUnavailable: 1, onFailure: 'stop' };

export type PlacementStrategy = 'binpack' | 'spread';

export interface Resources {
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly diskGiB: number;
}

export type FailoverPriority = 'high' | 'medium' | 'low';

export interface InstanceGroup {
  readonly name: string;
  readonly image: string;
  readonly replicas: number;
  readonly resources: Resources;
  readonly placement: {
    readonly strategy: PlacementStrategy;
    readonly spread: string | undefined;
    readonly requireLabels: Labels;
    readonly avoid: readonly string[];
  };
  readonly failover: boolean;
  /** Restart order after a failure (`failover: { priority }`): high first. `medium` unless set. */
  readonly failoverPriority: FailoverPriority;
  /**
   * The group's disk replication: set only for a protected group of VMs whose fleet or group
   * asks for it (`failover.replication`); undefined means its instances restart from the image.
   */
  readonly replication?: ReplicationPolicy | undefined;
  /** What a restart does without a usable replica (`failover: { onMissingReplica }`, default wait). */
  readonly onMissingReplica?: OnMissingReplica;
  readonly patchBaseline: string | undefined;
  /** The rolling patch's policy (absent: DEFAULT_ROLLOUT). */
  readonly patch?: RolloutPolicy;
  /** When its patches may start: the group's window, else the fleet's (absent: any time). */
  readonly patchWindow?: PatchWindow;
  /** The group's own pools followed by its image's, without repeats. */
  readonly licenses: readonly string[];
  readonly labels: Labels;
}

/** One replica of a group. Its name is `<group>-<index>`, always suffixed, so scaling 1 → 3 renames nothing. */
export interface Instance {
  readonly name: string;
  readonly group: string;
  readonly index: number;
}

export interface Fleet {
  readonly name: string;
  readonly failover: FailoverPolicy;
  readonly hosts: readonly Host[];
  readonly images: readonly Image[];
  readonly licenses: readonly LicensePool[];
  readonly patchBaselines: readonly PatchBaseline[];
  readonly groups: readonly InstanceGroup[];
}

/** `<group>-<index>`: the one place replica names are made. */
export function replicaName(group: string, index: number): string {
  return `${group}-${index}`;
}

/**
 * The group and index `replicaName` makes `name` of, or undefined when it makes no such name:
 * replicaName(r.group, r.index) === name exactly when r = replicaOf(name). An index is digits,
 * so the group is everything before the last '-'; the index must be written as replicaName
 * writes it (no sign, no leading zero). For looking replicas up by group and index instead of
 * building every replica's name.
 */
export function replicaOf(
  name: string,
): { readonly group: string; readonly index: number } | undefined {
  const dash = name.lastIndexOf('-');
  const digits = name.length - dash - 1;
  if (dash < 0 || digits === 0 || (digits > 1 && name.charCodeAt(dash + 1) === 48))
    return undefined;
  let index = 0;
  for (let i = dash + 1; i < name.length; i++) {
    const digit = name.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    index = index * 10 + digit;
  }
  return Number.isSafeInteger(index) ? { group: name.slice(0, dash), index } : undefined;
}

/**
 * The index replicaOf(name) gives when its group is `group`, else -1: `group`, a '-', and an
 * index as replicaName writes it (digits, no leading zero). For a caller that already holds the
 * group's name, usually the right one (a record's own group): no string is made for the group.
 */
export function replicaIndexIn(name: string, group: string): number {
  const at = group.length + 1;
  if (name.length <= at || name.charCodeAt(at - 1) !== 45 /* - */ || !name.startsWith(group))
    return -1;
  if (name.length - at > 1 && name.charCodeAt(at) === 48 /* 0 */) return -1;
  let index = 0;
  for (let i = at; i < name.length; i++) {
    const digit = name.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return -1;
    index = index * 10 + digit;
  }
  return Number.isSafeInteger(index) ? index : -1;
}

/** Every replica of every group, in spec order. */
export function* instancesOf(fleet: Pick<Fleet, 'groups'>): Generator<Instance> {
  for (const group of fleet.groups) {
    for (let index = 0; index < group.replicas; index++) {
      yield { name: replicaName(group.name, index), group: group.name, index };
    }
  }
}

// Compile-time proof that the spec types still carry what normalization reads.
type _GroupSpecFields = Pick<
  InstanceGroupSpec,
  'name' | 'image' | 'replicas' | 'resources' | 'placement' | 'failover' | 'patchBaseline'
>;
type _DocFields = Pick<FleetDocument, 'metadata' | 'spec'>;

export type { _DocFields, _GroupSpecFields };

/** The failure domain a host belongs to: its name with `domain: host`, else its label's value. */
export function failureDomainOf(
  fleet: Pick<Fleet, 'failover'>,
  host: Pick<Host, 'name' | 'labels'>,
): string {
  const domain = fleet.failover.domain;
  return domain === HOST_DOMAIN ? host.name : (host.labels[domain] ?? '');
}

/** Whether an OS is one that `appliesTo` names; a release or arch left out means any. */
export function osMatches(
  appliesTo: { readonly family: string; readonly release?: string; readonly arch?: string },
  os: { readonly family: string; readonly release: string; readonly arch: string },
): boolean {
  return (
    appliesTo.family === os.family &&
    (appliesTo.release === undefined || appliesTo.release === os.release) &&
    (appliesTo.arch === undefined || appliesTo.arch === os.arch)
  );
}

/** Every host's failure domain as a small number, numbered in host order, by host name. */
export function domainNumbers(fleet: Pick<Fleet, 'failover' | 'hosts'>): Map<string, number> {
  const numbers = new Map<string, number>();
  const byDomain = new Map<string, number>();
  for (const host of fleet.hosts) {
    const domain = failureDomainOf(fleet, host);
    if (!byDomain.has(domain)) byDomain.set(domain, byDomain.size);
    numbers.set(host.name, byDomain.get(domain) as number);
  }
  return numbers;
}
