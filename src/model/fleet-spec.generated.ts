// Generated from schemas/fleet.schema.json by scripts/gen-types.ts (npm run gen). Do not edit.

/**
 * A label value: 1 to 63 of letters, digits, '.', '_' and '-', starting and ending with a letter or digit.
 */
export type LabelValue = string;
/**
 * An operating system family.
 */
export type OsFamily =
  | 'debian'
  | 'ubuntu'
  | 'rhel'
  | 'centos'
  | 'rocky'
  | 'almalinux'
  | 'fedora'
  | 'sles'
  | 'opensuse'
  | 'alpine'
  | 'arch'
  | 'windows'
  | 'freebsd';
/**
 * An operating system release of letters, digits, '.', '_' and '-', such as "12", "9.4" or "2022".
 */
export type OsRelease = string;
/**
 * A CPU architecture, as uname -m names it.
 */
export type Arch = 'x86_64' | 'aarch64' | 'riscv64' | 'ppc64le' | 's390x' | 'i686' | 'armv7l';
/**
 * vm: a full virtual machine (QEMU); container: a sandbox sharing the host kernel (chroot + namespaces).
 */
export type InstanceKind = 'vm' | 'container';
/**
 * A DNS label (RFC 1123): lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit.
 */
export type Name = string;
/**
 * Host-metric license pools this host is already assigned to (it counts against them whether or not it runs licensed instances).
 *
 * @maxItems 256
 */
export type NameList = Name[];
/**
 * A Debian package version: [epoch:]upstream[-revision], the upstream part starting with a digit.
 */
export type PackageVersion = string;
/**
 * License pools every instance of this image draws on.
 *
 * @maxItems 256
 */
export type NameList1 = Name[];
/**
 * Instance groups whose instances must not share a host with this group's (a group may name itself: one replica per host).
 *
 * @maxItems 256
 */
export type NameList2 = Name[];
/**
 * License pools each replica draws on, in addition to its image's.
 *
 * @maxItems 256
 */
export type NameList3 = Name[];

/**
 * A vfleet fleet spec (apiVersion vfleet/v1, kind Fleet): the hosts, images, license pools, patch baselines and instance groups of one fleet.
 */
export interface FleetDocument {
  /**
   * The spec format version.
   */
  apiVersion: 'vfleet/v1';
  /**
   * The document kind.
   */
  kind: 'Fleet';
  metadata: Metadata;
  spec: FleetSpec;
}
/**
 * Who this fleet is.
 */
export interface Metadata {
  /**
   * The fleet's name; it prefixes the fleet's keys in Redis.
   */
  name: string;
  /**
   * Free text for the reader: one line, no control characters.
   */
  description?: string;
  labels?: Labels;
}
/**
 * Key/value labels. On hosts they drive placement (requireLabels, spread) and failure domains; on the fleet and on groups they are for the reader and for tools.
 */
export interface Labels {
  [k: string]: LabelValue;
}
/**
 * The fleet's desired state.
 */
export interface FleetSpec {
  failover?: FailoverPolicy;
  /**
   * The machines instances are placed on.
   *
   * @minItems 1
   * @maxItems 100000
   */
  hosts: [Host, ...Host[]];
  /**
   * What instances boot: container root filesystems and VM disks.
   *
   * @maxItems 10000
   */
  images: Image[];
  /**
   * License pools: what the organisation owns, and how each counts.
   *
   * @maxItems 1000
   */
  licenses?: LicensePool[];
  /**
   * Minimum package versions for the instances (and hosts) they apply to.
   *
   * @maxItems 1000
   */
  patchBaselines?: PatchBaseline[];
  patching?: PatchingPolicy;
  /**
   * Instance groups; the replicas of group web are web-0, web-1, and so on.
   *
   * @maxItems 1000000
   */
  instances?: InstanceGroup[];
}
/**
 * Standby capacity for protected instances. Without this section nothing is reserved (tolerate 0).
 */
export interface FailoverPolicy {
  /**
   * Simultaneous domain failures to survive (0 turns standby reservation off).
   */
  tolerate?: number;
  /**
   * A label key: an optional DNS-subdomain prefix and '/', then 1 to 63 of lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit.
   */
  domain?: string;
  /**
   * When a failed host returns: manual leaves the instances where they restarted; auto moves them back to the placement the scheduler prefers.
   */
  failback?: 'manual' | 'auto';
  replication?: ReplicationPolicy;
}
/**
 * Replicate every protected VM's disk to its failover host, so that a restart after a host failure starts from the replica (its data as of the last sync) instead of the image. Without this section no disk is replicated.
 */
export interface ReplicationPolicy {
  /**
   * How often each protected VM's disk is synced to its failover host (at least 1s).
   */
  interval?: string;
  /**
   * The oldest a replica may be (the recovery point objective); older is rpo-exceeded in status and the failover audit. At least the interval.
   */
  maxRpo?: string;
}
/**
 * A machine that runs instances.
 */
export interface Host {
  /**
   * The host's unique name.
   */
  name: string;
  /**
   * How vfleet drives the host: the built-in emulator (embedded), this machine (local) or SSH (ssh).
   */
  engine?: 'embedded' | 'local' | 'ssh';
  /**
   * A DNS name, IPv4 or IPv6 address: where an ssh host is reached.
   */
  address?: string;
  /**
   * The TCP port of an ssh host.
   */
  port?: number;
  /**
   * A POSIX user name (lower-case letters, digits, '_' and '-'): the ssh login user.
   */
  user?: string;
  /**
   * An OpenSSH public key line ("ssh-ed25519 AAAA...") or its SHA256 fingerprint ("SHA256:..."): the ssh host's pinned key. vfleet refuses a host whose key differs.
   */
  hostKey?: string;
  /**
   * The private key file for an ssh host; without it vfleet uses the ssh-agent at SSH_AUTH_SOCK.
   */
  identityFile?: string;
  /**
   * Where instance folders live on a local or ssh host.
   */
  dataDir?: string;
  labels?: Labels;
  /**
   * The host's processors.
   */
  cpu: {
    /**
     * Physical processors.
     */
    sockets: number;
    /**
     * Physical cores per processor.
     */
    coresPerSocket: number;
    /**
     * Hardware threads per core (2 with SMT).
     */
    threadsPerCore?: number;
  };
  /**
   * Memory in MiB.
   */
  memoryMiB: number;
  /**
   * Disk for instances, in GiB.
   */
  diskGiB: number;
  os: HostOs;
  /**
   * What the host can run: full VMs (vm), sandboxes (container), or both.
   *
   * @minItems 1
   * @maxItems 2
   */
  runs: [InstanceKind] | [InstanceKind, InstanceKind];
  /**
   * Move every instance off this host and place nothing new on it (it stays reachable for the moves). Remove the host from the spec once it runs nothing.
   */
  drain?: boolean;
  /**
   * How far placement may oversubscribe the host: allocatable = physical times the ratio.
   */
  overcommit?: {
    /**
     * vCPUs per hardware thread.
     */
    cpu?: number;
    /**
     * Allocatable memory per MiB of physical memory (1: no overcommit).
     */
    memory?: number;
  };
  licenses?: NameList;
  /**
   * A DNS label (RFC 1123): lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit.
   */
  patchBaseline?: string;
  packages?: PackageVersions;
  /**
   * The host's package inventory file in dpkg-query -W -f='${binary:Package}\t${Version}\n' format; entries in packages override it.
   */
  packagesFrom?: string;
}
/**
 * The host's operating system; containers must match its family, release and arch.
 */
export interface HostOs {
  family: OsFamily;
  release: OsRelease;
  /**
   * A kernel release as uname -r prints it (letters, digits and . _ + ~ -).
   */
  kernel?: string;
  arch: Arch;
}
/**
 * The host's package inventory (name to installed version), as the embedded engine reports it.
 */
export interface PackageVersions {
  [k: string]: PackageVersion;
}
/**
 * What an instance boots.
 */
export interface Image {
  /**
   * A DNS label (RFC 1123): lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit.
   */
  name: string;
  kind: InstanceKind;
  os: ImageOs;
  source?: ImageSource;
  guest?: GuestAccess;
  /**
   * container: the program the sandbox runs and its arguments (an argument vector, never parsed by a shell); default /sbin/init.
   *
   * @minItems 1
   * @maxItems 64
   */
  command?: [string, ...string[]];
  /**
   * vm: may run on a host of another arch under QEMU's emulation (TCG).
   */
  allowEmulation?: boolean;
  packages?: PackageVersions1;
  /**
   * A package inventory file in dpkg-query -W -f='${binary:Package}\t${Version}\n' format; entries in packages override it.
   */
  packagesFrom?: string;
  licenses?: NameList1;
}
/**
 * The image's operating system.
 */
export interface ImageOs {
  family: OsFamily;
  release: OsRelease;
  arch: Arch;
}
/**
 * Where the image's files are: rootfs for a container; disk, or kernel (+ initrd), for a VM.
 */
export interface ImageSource {
  /**
   * container: a root filesystem tarball or folder.
   */
  rootfs?: string;
  /**
   * vm: a qcow2 base disk.
   */
  disk?: string;
  /**
   * vm: a kernel to boot directly.
   */
  kernel?: string;
  /**
   * vm: the kernel's initrd.
   */
  initrd?: string;
  /**
   * A kernel command line of letters, digits, spaces and . _ , : = / + - only, not starting with '-' (vm with kernel).
   */
  cmdline?: string;
}
/**
 * vm on a local or ssh host: how vfleet reaches the running guest to read its dpkg inventory and patch it with its own APT. The VM gets QEMU's user network with restrict=on (the guest reaches nothing but its forwards), its sshd forwarded to a port on its host's loopback; vfleet logs in with identityFile over the host's transport and pins hostKey. Without it a VM on a real host is neither inventoried nor patched.
 */
export interface GuestAccess {
  /**
   * The login user in the guest: root, or a user that may run any command through sudo without a password.
   */
  user?: string;
  /**
   * The TCP port of the guest's sshd.
   */
  port?: number;
  /**
   * An OpenSSH public key line ("ssh-ed25519 AAAA...") or its SHA256 fingerprint: the guest's sshd's pinned key. vfleet refuses a guest whose key differs.
   */
  hostKey: string;
  /**
   * The private key vfleet logs into the guest with, on the machine that runs vfleet.
   */
  identityFile: string;
  /**
   * What the guest may reach on its host: a connection to 10.0.2.100:port in the guest goes to 127.0.0.1:hostPort on the host (an APT mirror or proxy there). Nothing else leaves the guest.
   *
   * @maxItems 64
   */
  forwards?: GuestForward[];
}
/**
 * A port on the host's loopback the guest may reach.
 */
export interface GuestForward {
  /**
   * The port the guest connects to at 10.0.2.100.
   */
  port: number;
  /**
   * The port on the host's 127.0.0.1 it reaches.
   */
  hostPort: number;
}
/**
 * The image's package inventory (name to installed version), as the embedded engine reports it.
 */
export interface PackageVersions1 {
  [k: string]: PackageVersion;
}
/**
 * Licenses the organisation owns, and the metric by which they are counted.
 */
export interface LicensePool {
  /**
   * A DNS label (RFC 1123): lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit.
   */
  name: string;
  /**
   * Free text naming the licensed product, for the reader and the reports: one line, no control characters.
   */
  product?: string;
  /**
   * What one unit covers. instance: one instance. instance-vcpu: one vCPU of an instance. host-core: one physical core of every host that runs (or, with coverFailover, may fail over) a licensed instance. host-socket-pair: two sockets of such a host. host: one such host.
   */
  metric: 'instance' | 'instance-vcpu' | 'host-core' | 'host-socket-pair' | 'host';
  /**
   * Units owned.
   */
  entitlement: number;
  /**
   * host-core: at least this many core units per counted host (16 for Windows Server).
   */
  minimumPerHost?: number;
  /**
   * host-core: at least this many core units per processor (8 for Windows Server).
   */
  minimumPerProcessor?: number;
  /**
   * instance-vcpu: at least this many units per instance.
   */
  minimumPerInstance?: number;
  /**
   * Stacked rights, as Windows Server Standard's 2: licensing a host's cores once covers this many instances on it, and every further batch of that many needs the cores licensed again. Absent: one licensing covers any number of instances.
   */
  instancesPerUnit?: number;
  /**
   * Hosts that are failover targets of a licensed instance must be licensed too.
   */
  coverFailover?: boolean;
}
/**
 * Minimum package versions for the instances and hosts it applies to.
 */
export interface PatchBaseline {
  /**
   * A DNS label (RFC 1123): lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit.
   */
  name: string;
  /**
   * The operating systems the baseline applies to; a release or arch left out means any. Instances of other systems are reported as not applicable.
   */
  appliesTo: {
    family: OsFamily;
    release?: OsRelease;
    arch?: Arch;
  };
  /**
   * Package name to the lowest compliant version (compared as dpkg does): the version alone, or { version, security, reboot } to say more about the update.
   */
  minimum: {
    [k: string]: PackageVersion | BaselineEntry;
  };
}
/**
 * One package of a baseline with what vfleet should know about its update.
 */
export interface BaselineEntry {
  /**
   * A Debian package version: [epoch:]upstream[-revision], the upstream part starting with a digit.
   */
  version: string;
  /**
   * The update fixes a security issue: the patch audit counts it apart from other updates (its security column).
   */
  security?: boolean;
  /**
   * The embedded engine only: installing this version asks for a restart, as a kernel or libc update does, so the patch audit says pending-reboot until the instance is started again. Real hosts say so themselves (/var/run/reboot-required) and ignore this.
   */
  reboot?: boolean;
}
/**
 * Fleet-wide patching settings.
 */
export interface PatchingPolicy {
  patchWindow?: PatchWindow;
}
/**
 * When patches may start, for every group that does not set its own patchWindow. Without one, patches run whenever a plan is applied.
 */
export interface PatchWindow {
  /**
   * When the window opens: a five-field cron expression (minute hour day-of-month month day-of-week), such as "0 2 * * sun" for Sundays at 02:00.
   */
  cron: string;
  /**
   * How long the window stays open (at least 1m). A patch started before it closes runs to its end.
   */
  duration: string;
  /**
   * The IANA time zone the cron expression is read in, such as "Europe/Paris".
   */
  timezone?: string;
}
/**
 * A group of identical instances.
 */
export interface InstanceGroup {
  /**
   * A DNS label (RFC 1123): lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit.
   */
  name: string;
  /**
   * A DNS label (RFC 1123): lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit.
   */
  image: string;
  /**
   * How many instances.
   */
  replicas?: number;
  /**
   * What each replica needs.
   */
  resources: {
    /**
     * Virtual CPUs.
     */
    vcpus: number;
    /**
     * Memory in MiB.
     */
    memoryMiB: number;
    /**
     * Disk in GiB.
     */
    diskGiB?: number;
  };
  /**
   * Constraints on where replicas go.
   */
  placement?: {
    /**
     * binpack fills hosts before opening new ones; spread prefers the emptiest host.
     */
    strategy?: 'binpack' | 'spread';
    /**
     * A label key: an optional DNS-subdomain prefix and '/', then 1 to 63 of lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit.
     */
    spread?: string;
    requireLabels?: Labels1;
    avoid?: NameList2;
  };
  /**
   * Reserve standby capacity so each replica can restart elsewhere when its failure domain fails: true, or { priority } to say which groups the controller restarts first (true is priority medium).
   */
  failover?:
    | boolean
    | {
        /**
         * Restart order after a failure: high first, then medium, then low.
         */
        priority?: 'high' | 'medium' | 'low';
        /**
         * This group's replication: its own interval and maxRpo, or false for none (a VM group only; the fleet's failover.replication otherwise).
         */
        replication?: false | ReplicationPolicy1;
        /**
         * A protected VM whose failover host holds no usable replica when its host fails: image restarts it from its image (its data lost, and the event says so); wait leaves it down until its host returns or an operator decides.
         */
        onMissingReplica?: 'image' | 'wait';
      };
  /**
   * A DNS label (RFC 1123): lower-case letters, digits and '-', 1 to 63 characters, starting and ending with a letter or digit.
   */
  patchBaseline?: string;
  patchWindow?: PatchWindow1;
  patch?: RolloutPolicy;
  licenses?: NameList3;
  labels?: Labels;
}
/**
 * Key/value labels. On hosts they drive placement (requireLabels, spread) and failure domains; on the fleet and on groups they are for the reader and for tools.
 */
export interface Labels1 {
  [k: string]: LabelValue;
}
/**
 * Disk replication of protected VMs to their failover hosts: how often an increment is shipped, and how old a replica may grow before the failover audit says rpo-exceeded.
 */
export interface ReplicationPolicy1 {
  /**
   * How often each protected VM's disk is synced to its failover host (at least 1s).
   */
  interval?: string;
  /**
   * The oldest a replica may be (the recovery point objective); older is rpo-exceeded in status and the failover audit. At least the interval.
   */
  maxRpo?: string;
}
/**
 * When this group's replicas may be patched; without it, the fleet's spec.patching.patchWindow, and without that, at any time.
 */
export interface PatchWindow1 {
  /**
   * When the window opens: a five-field cron expression (minute hour day-of-month month day-of-week), such as "0 2 * * sun" for Sundays at 02:00.
   */
  cron: string;
  /**
   * How long the window stays open (at least 1m). A patch started before it closes runs to its end.
   */
  duration: string;
  /**
   * The IANA time zone the cron expression is read in, such as "Europe/Paris".
   */
  timezone?: string;
}
/**
 * How the group's replicas are patched: a rolling patch, a few at a time.
 */
export interface RolloutPolicy {
  /**
   * Replicas of the group patched at the same time: the next batch starts once every replica of the last one is running again.
   */
  maxUnavailable?: number;
  /**
   * When a replica's patch fails. stop: the group's rollout stops there (its later replicas are not patched; the rest of the fleet goes on). rollback: the same, and the failed replica is first put back as it was before the patch from a snapshot; VM groups only (docs/patching.md says which engines honour it).
   */
  onFailure?: 'stop' | 'rollback';
}
